# Shared by scripts/up, scripts/test and scripts/images: installs what a fresh Debian machine
# lacks and picks the cargo target dir. Sourced, not run.

# Installs the Debian packages among "$@" that are missing.
ensure_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# libclang for the rocksdb crate's bindgen; busybox-static for the images
# pods run, built without a registry (scripts/images, and the Docker
# runtime's tests).
ensure_system_packages() {
  ensure_debian_packages libclang-dev busybox-static
  command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }
}

# One build of RocksDB serves the tests, the demo cluster and the benchmark;
# a target dir outside the clone lets the next clone on this machine reuse it.
choose_target_dir() {
  if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if mkdir -p /var/cache/corral/target 2>/dev/null && [ -w /var/cache/corral/target ]; then
      export CARGO_TARGET_DIR=/var/cache/corral/target
    else
      export CARGO_TARGET_DIR="$PWD/target"
    fi
  fi
}
