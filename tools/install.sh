#!/usr/bin/env bash
# Set-up behind `make install`: Debian packages, the project venv, the engine,
# and the plugin linked into the user's QGIS profile. Safe to run again.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DEB_PACKAGES=(qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-venv python3-matplotlib xvfb xauth)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> Installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> Creating .venv on the system Python (sees QGIS, PyQt5 and GDAL)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
echo "==> Installing Python packages (torch, timm, test tools)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e engine
.venv/bin/python -c "import torch, timm, osgeo.gdal, qgis.core; print('   torch', torch.__version__, '| timm', timm.__version__, '| GDAL', osgeo.gdal.__version__)"

# QGIS (and qgis_process) read QGIS_CUSTOM_CONFIG_PATH when set, else the user's folder.
PROFILE="${QGIS_CUSTOM_CONFIG_PATH:-$HOME/.local/share/QGIS/QGIS3}/profiles/default"
PLUGINS="$PROFILE/python/plugins"
mkdir -p "$PLUGINS"
if [ -e "$PLUGINS/mobanet_qgis" ] && [ ! -L "$PLUGINS/mobanet_qgis" ]; then
  echo "warning: $PLUGINS/mobanet_qgis exists and is not our link; leaving it alone" >&2
else
  ln -sfn "$ROOT/mobanet_qgis" "$PLUGINS/mobanet_qgis"
  echo "==> Plugin linked: $PLUGINS/mobanet_qgis -> $ROOT/mobanet_qgis"
fi
# qgis_process exits non-zero for "Plugin is already enabled!": that is success here
if ! enable_log=$("$ROOT/tools/qgis_process" plugins enable mobanet_qgis 2>&1); then
  grep -q "already enabled" <<<"$enable_log" || { echo "$enable_log" >&2; exit 1; }
fi
echo "==> Plugin enabled for QGIS and qgis_process"
