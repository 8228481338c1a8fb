#!/usr/bin/env bash
# make test-ltr: the plugin tests and a headless `qgis_process run mobanet:segment` under the newest QGIS that
# Debian ships (sid: QGIS 3.44 LTR, Python 3.14), inside a Debian chroot that is built once and cached.
#
#   MOBANET_LTR_CACHE    cache folder, outside the repository (default /var/cache/mobanet-qgis): the chroot
#                        sid/ with QGIS (2.6 GB) and the test and engine venvs (5.5 GB: CUDA torch wheels)
#   MOBANET_LTR_MIRROR   Debian mirror for the chroot (default http://deb.debian.org/debian)
#   MOBANET_LTR_REBUILD  set to 1 to build the chroot anew
#
# The chroot is built into sid.new and renamed to sid only when complete, with a stamp naming its recipe;
# a missing, unfinished or differently made chroot is rebuilt. Each run copies the working tree (tracked
# and untracked-but-not-ignored files) into the chroot and runs tools/test_ltr_chroot.sh there. /proc and
# /dev/shm are mounted into the chroot and unmounted on exit, also on failure or Ctrl-C.
# Needs root (debootstrap, chroot, mount).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${MOBANET_LTR_CACHE:-/var/cache/mobanet-qgis}"
MIRROR="${MOBANET_LTR_MIRROR:-http://deb.debian.org/debian}"
CHROOT="$CACHE/sid"
STAMP="$CHROOT/.mobanet-chroot"
WORK_IN_CHROOT=/work/mobanet-qgis
DEB_PACKAGES=(qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-venv xvfb xauth
              ca-certificates make)
RECIPE="debian sid minbase; apt Check-Valid-Until false; ${DEB_PACKAGES[*]}"
# Environment that pip and Qt need inside; the rest of the host's environment stays outside.
PASSED_ENV=(http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_EXTRA_INDEX_URL
            PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK CI)

say() { printf '==> %s\n' "$*"; }
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }

if [ "$(id -u)" -ne 0 ]; then
  echo "make test-ltr needs root (debootstrap, chroot, mount): run it as root or with sudo" >&2
  exit 2
fi

# -- mounts, always undone -----------------------------------------------------------------------------
MOUNTED=()
mount_into() {  # mount_into TARGET MOUNT-ARGS...: remember it for cleanup
  local target="$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTED+=("$target")
}
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true
  done
  MOUNTED=()
}
# The run inside has its own process group, so that Ctrl-C here stops all of it: QGIS ignores SIGINT.
INSIDE_PGID=""
stop_inside() {
  [ -n "$INSIDE_PGID" ] && kill -0 -- "-$INSIDE_PGID" 2>/dev/null || return 0
  kill -TERM -- "-$INSIDE_PGID" 2>/dev/null || true
  local waited
  for waited in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$INSIDE_PGID" 2>/dev/null || return 0
    sleep 1
  done
  kill -KILL -- "-$INSIDE_PGID" 2>/dev/null || true
  sleep 1
}
trap 'stop_inside; unmount_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mounts_under() { awk -v dir="$1" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/mounts; }

remove_tree() {  # a chroot folder, never while anything is mounted in it (rm would reach through a mount)
  local dir="$1"
  [ -e "$dir" ] || return 0
  if [ -n "$(mounts_under "$dir")" ]; then
    echo "refusing to remove $dir: still mounted there: $(mounts_under "$dir" | tr '\n' ' ')" >&2
    exit 1
  fi
  rm -rf --one-file-system "$dir"
}

# -- the chroot ------------------------------------------------------------------------------------------
network_into() {  # the host's DNS and CA bundle (with the proxy's CA), so that apt and pip reach the registries
  local root="$1"
  cp --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/pip.conf"; fi
}

chroot_is_ready() {
  [ "${MOBANET_LTR_REBUILD:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] \
    && [ -x "$CHROOT/usr/bin/qgis_process.bin" ] && [ -x "$CHROOT/usr/bin/python3" ]
}

logged() {  # run a chatty build step into the build log; show its end if it fails
  if ! "$@" >> "$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    echo "failed: $* (whole log: $BUILD_LOG)" >&2
    return 1
  fi
}

build_chroot() {
  local new="$CACHE/sid.new"
  mkdir -p "$CACHE"
  BUILD_LOG="$CACHE/build.log"
  : > "$BUILD_LOG"
  say "Building the Debian sid chroot in $CHROOT (once; 3 to 8 minutes; log: $BUILD_LOG)"
  if ! command -v debootstrap >/dev/null; then
    logged apt-get update -q
    DEBIAN_FRONTEND=noninteractive logged apt-get install -y -q debootstrap
  fi
  remove_tree "$new"
  logged debootstrap --variant=minbase sid "$new" "$MIRROR"
  # The archive's sid Release file may be past its Valid-Until date.
  echo 'Acquire::Check-Valid-Until "false";' > "$new/etc/apt/apt.conf.d/99mobanet-no-valid-until"
  network_into "$new"
  mount_into "$new/proc" -t proc proc
  logged chroot "$new" apt-get update -q
  logged chroot "$new" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${DEB_PACKAGES[@]}"
  logged chroot "$new" apt-get clean
  unmount_all
  network_into "$new"  # ca-certificates rewrote the bundle without the proxy's CA
  echo "$RECIPE" > "$new/.mobanet-chroot"
  remove_tree "$CHROOT"
  mv "$new" "$CHROOT"
  say "Chroot ready after $(elapsed)"
}

# -- one run ---------------------------------------------------------------------------------------------
copy_working_tree() {  # tracked and untracked-but-not-ignored files, as they are now (no .venv, no caches)
  local target="$CHROOT$WORK_IN_CHROOT"
  remove_tree "$target"
  mkdir -p "$target"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$target"
}

main() {
  if ! chroot_is_ready; then build_chroot; fi
  network_into "$CHROOT"
  copy_working_tree
  mount_into "$CHROOT/proc" -t proc proc
  mount_into "$CHROOT/dev/shm" -t tmpfs -o mode=1777 shm

  local env_args=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
                  PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
                  REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
  local name
  for name in "${PASSED_ENV[@]}"; do
    if [ -n "${!name:-}" ]; then env_args+=("$name=${!name}"); fi
  done
  say "Running in the chroot ($(elapsed) so far)"
  setsid chroot "$CHROOT" /usr/bin/env -i "${env_args[@]}" /bin/bash "$WORK_IN_CHROOT/tools/test_ltr_chroot.sh" &
  INSIDE_PGID=$!
  wait "$INSIDE_PGID"
  say "make test-ltr passed in $(elapsed)"
}

main "$@"
