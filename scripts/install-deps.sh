#!/usr/bin/env bash
# Installs what a fresh machine lacks: nats-server (Debian package) and the npm packages; with
# --browser also Debian's chromium, for the dashboard's end-to-end test (`npm test` asks for it).
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install <package> <why>: as root, or through sudo; otherwise says what to install by hand.
apt_install() {
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "$1 not found; install the Debian package $1 (apt-get install $1): $2" >&2
    exit 1
  fi
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing $1 (Debian package, $2)..." >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}

if ! command -v nats-server >/dev/null 2>&1; then
  apt_install nats-server "the runtime's NATS server (or set NATS_URL to a running one)"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages..." >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium "for the dashboard's end-to-end test"
fi
