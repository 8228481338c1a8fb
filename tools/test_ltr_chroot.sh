#!/usr/bin/env bash
# The part of `make test-ltr` that runs inside the Debian sid chroot (tools/test_ltr.sh copies the working
# tree to /work/mobanet-qgis and calls this): the plugin tests and a headless qgis_process run on QGIS 3.44.
#
# Two Pythons, both venvs on Debian's python3 with its QGIS, PyQt5, GDAL and numpy:
# - the test runner (/opt/mobanet/test-venv): pytest and pytest-qgis, no torch (the plugin runs the engine
#   in its own process, so the tests must not need it);
# - the engine environment (/opt/mobanet/engine-venv), made as a user's would be: see make_engine_environment.
# Both are kept between runs and remade when their pinned requirements change.
set -euo pipefail

REPO=/work/mobanet-qgis
TEST_VENV=/opt/mobanet/test-venv
ENGINE_VENV=/opt/mobanet/engine-venv
OUT=/tmp/mobanet-ltr
PROFILE="$OUT/profile"  # QGIS_CUSTOM_CONFIG_PATH of the qgis_process runs (not of the tests: pytest-qgis has its own)
cd "$REPO"
export QT_QPA_PLATFORM=offscreen
XDG_RUNTIME_DIR="$(mktemp -d /tmp/xdg-runtime.XXXXXX)"
export XDG_RUNTIME_DIR

say() { printf '==> %s\n' "$*"; }

# Pins of the named packages from requirements.txt (one source of versions for both machines).
pins() { local name; for name in "$@"; do grep -E "^${name}(==|>=)" requirements.txt; done; }

venv_with() {  # venv_with DIR PIP-REQUIREMENT...: (re)create DIR unless it already has exactly these
  local dir="$1"; shift
  local wanted
  wanted="$(printf '%s\n' "$@")"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.mobanet-requirements" 2>/dev/null)" = "$wanted" ]; then
    return 0
  fi
  say "Creating $dir: $*"
  rm -rf "$dir"
  python3 -m venv --system-site-packages "$dir"
  "$dir/bin/python" -m pip install -q --progress-bar off "$@"
  printf '%s\n' "$wanted" > "$dir/.mobanet-requirements"
}

make_engine_environment() {
  # The engine's Python, as a user gets it. Until `mobanet:setup` (issue 10) lands this is a venv made here:
  # torch, torchvision, timm, safetensors, tqdm at the project's pins (numpy and GDAL from Debian: sid's
  # GDAL is built for numpy 2), the engine installed editable from this checkout as `make install` does (so
  # it finds resources/ beside it), and linked as the checkout's .venv, where the plugin looks for it.
  # After the merge this whole step becomes:
  #   qgis_process run mobanet:setup
  # with QGIS_CUSTOM_CONFIG_PATH="$PROFILE" (the profile make_profile made).
  # shellcheck disable=SC2046
  venv_with "$ENGINE_VENV" $(pins torch torchvision timm safetensors tqdm)
  "$ENGINE_VENV/bin/python" -m pip install -q --progress-bar off --no-deps -e ./engine
  ln -sfn "$ENGINE_VENV" "$REPO/.venv"
  "$ENGINE_VENV/bin/python" -c "import torch, timm, mobanet; print('   engine: mobanet', mobanet.__version__, \
'| torch', torch.__version__, '| timm', timm.__version__)"
}

run_plugin_tests() {
  say "Plugin tests (tests/plugin, the Qt6 check, the release zip) on $QGIS_VERSION"
  "$TEST_VENV/bin/python" -m pytest tests/plugin tests/test_check_qt6.py tests/test_package.py \
    -p no:cacheprovider -q -ra
}

make_profile() {  # a fresh QGIS profile for qgis_process with the plugin installed and enabled, as a user has it
  rm -rf "$OUT" && mkdir -p "$PROFILE/profiles/default/python/plugins"
  ln -s "$REPO/mobanet_qgis" "$PROFILE/profiles/default/python/plugins/mobanet_qgis"
  QGIS_CUSTOM_CONFIG_PATH="$PROFILE" qgis_process plugins enable mobanet_qgis >/dev/null
}

run_qgis_process_on_the_sample() {
  say "qgis_process run mobanet:segment on the bundled sample (profile $PROFILE)"
  QGIS_CUSTOM_CONFIG_PATH="$PROFILE" qgis_process run mobanet:segment -- OPTICAL=resources/sample/sample_optical.tif \
    DSM=resources/sample/sample_dsm.tif OUTPUT="$OUT/sample_classes.tif"
  "$ENGINE_VENV/bin/python" tools/describe_classification.py "$OUT/sample_classes.tif" \
    --reference resources/sample/sample_labels.tif
}

QGIS_VERSION="QGIS $(python3 -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION)'), $(python3 -V), GDAL \
$(python3 -c 'from osgeo import gdal; print(gdal.__version__)')"
say "Debian sid chroot: $QGIS_VERSION"
# shellcheck disable=SC2046
venv_with "$TEST_VENV" $(pins pytest pytest-qgis pytest-timeout)
make_profile
make_engine_environment
run_plugin_tests
run_qgis_process_on_the_sample
say "make test-ltr ran on $QGIS_VERSION"
