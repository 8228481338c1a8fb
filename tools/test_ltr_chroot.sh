#!/usr/bin/env bash
# The part of `make test-ltr` that runs inside the Debian sid chroot (tools/test_ltr.sh copies the working
# tree to /work/mobanet-qgis and calls this): the plugin tests and a headless qgis_process run on QGIS 3.44.
#
# Two Pythons, both venvs on Debian's python3 with its QGIS, PyQt5, GDAL and numpy:
# - the test runner (/opt/mobanet/test-venv): pytest and pytest-qgis, no torch (the plugin runs the engine
#   in its own process, so the tests must not need it);
# - the engine environment (under /opt/mobanet/engine), made as a user's is: see make_engine_environment.
# Both are kept between runs and remade when their pinned requirements change.
set -euo pipefail

REPO=/work/mobanet-qgis
TEST_VENV=/opt/mobanet/test-venv
ENGINE_LOCATION=/opt/mobanet/engine  # mobanet:setup's LOCATION: kept between runs
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
  # The engine's Python, made as a Plugin Manager user makes it: "MoBaNet -> Set up the engine"
  # (qgis_process run mobanet:setup) in the profile that has the plugin from the zip. Its LOCATION is kept
  # between runs, so a rerun finds the environment up to date (seconds) and a changed engine is upgraded.
  # The plugin tests run in pytest-qgis's own profile: they reach the same environment through $MOBANET_PYTHON.
  say "qgis_process run mobanet:setup (LOCATION $ENGINE_LOCATION)"
  if ! QGIS_CUSTOM_CONFIG_PATH="$PROFILE" qgis_process --json run mobanet:setup -- LOCATION="$ENGINE_LOCATION" \
      > "$OUT/setup.json" 2> "$OUT/setup.stderr"; then
    tail -n 40 "$OUT/setup.json" "$OUT/setup.stderr" >&2
    return 1
  fi
  MOBANET_PYTHON="$(python3 -c 'import json, sys; text = open(sys.argv[1]).read()
report = json.loads(text[text.index("{"):])
print(report["results"]["ACTION"], file=sys.stderr)
print(report["results"]["PYTHON"])' "$OUT/setup.json")"
  export MOBANET_PYTHON
  "$MOBANET_PYTHON" -c "import torch, timm; print('   engine environment: torch', torch.__version__, \
'| timm', timm.__version__)"
}

run_plugin_tests() {
  say "Plugin tests (tests/plugin, the Qt6 check, the release zip) on $QGIS_VERSION"
  # tests/plugin/test_setup_qgis_process.py builds three engine environments from scratch; here the set-up step
  # above has just run that same path for real (zip, qgis_process, pip), so it is not repeated.
  "$TEST_VENV/bin/python" -m pytest tests/plugin tests/test_check_qt6.py tests/test_package.py \
    --ignore=tests/plugin/test_setup_qgis_process.py -p no:cacheprovider -q -ra
}

make_profile() {  # a fresh QGIS profile for qgis_process with the plugin installed from its zip and enabled
  rm -rf "$OUT" && mkdir -p "$PROFILE/profiles/default/python/plugins"
  python3 tools/build_package.py --output "$OUT/mobanet_qgis.zip" >/dev/null
  python3 -m zipfile -e "$OUT/mobanet_qgis.zip" "$PROFILE/profiles/default/python/plugins"
  QGIS_CUSTOM_CONFIG_PATH="$PROFILE" qgis_process plugins enable mobanet_qgis >/dev/null
}

run_qgis_process_on_the_sample() {
  say "qgis_process run mobanet:segment on the bundled sample (profile $PROFILE)"
  QGIS_CUSTOM_CONFIG_PATH="$PROFILE" qgis_process run mobanet:segment -- OPTICAL=resources/sample/sample_optical.tif \
    DSM=resources/sample/sample_dsm.tif OUTPUT="$OUT/sample_classes.tif"
  "$MOBANET_PYTHON" tools/describe_classification.py "$OUT/sample_classes.tif" \
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
