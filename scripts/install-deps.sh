#!/usr/bin/env bash
# Installs what a fresh machine lacks: a current nats-server (the version pinned in package.json,
# `natsServer`), the npm packages, and with --browser Debian's chromium, for the dashboard's
# end-to-end test (`npm test` asks for it).
#
# nats-server: an installed one at or above `natsServer.minimum` is used as it is; otherwise the
# pinned release is built from its Go module into .tools/ (once: later runs reuse it). Debian's
# package (2.9.10) is never what runs: it accepts several concurrent revision-checked KV updates
# in a cluster (nats-io/nats-server#4320), which the shard leases and fencing rely on.
#
#   bash scripts/install-deps.sh [--browser]   install what is missing
#   bash scripts/install-deps.sh --nats-path   also print the nats-server to run (its path) on stdout
#
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

pinned=$(node -p "require('./package.json').natsServer.pinned")
minimum=$(node -p "require('./package.json').natsServer.minimum")
built=".tools/nats-server-v$pinned/nats-server"

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

version_of() { "$1" --version 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | head -1; }
# at_least <version> <minimum>
at_least() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# The nats-server to run: NATS_SERVER_BIN if set, the project's own build of the pinned release,
# then one on PATH that is recent enough. src/nats/server-binary.ts resolves it the same way.
nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"; return; fi
  if [ -x "$built" ]; then echo "$PWD/$built"; return; fi
  local installed; installed=$(command -v nats-server || true)
  if [ -n "$installed" ] && at_least "$(version_of "$installed")" "$minimum"; then echo "$installed"; return; fi
  return 1
}

if ! nats_server >/dev/null; then
  installed=$(command -v nats-server || true)
  [ -n "$installed" ] && echo "nats-server $(version_of "$installed") at $installed is older than $minimum, the minimum; building $pinned for this project" >&2
  if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<TXT
activeflow needs nats-server $minimum or later ($pinned is the version it is tested with), and
there is none here, nor Go to build it. Any one of these works:
  - install Go 1.26 or later (what nats-server $pinned declares), then run this script again (it builds $pinned into .tools/);
  - install the official release of nats-server $pinned (the nats-io/nats-server releases) on PATH;
  - run the container image nats:$pinned-alpine and set NATS_URL to it;
  - point NATS_SERVER_BIN at a nats-server binary.
TXT
    exit 1
  fi
  echo "building nats-server $pinned from its Go module into $(dirname "$built") (once, about a minute)..." >&2
  mkdir -p "$(dirname "$built")"
  GOBIN="$PWD/$(dirname "$built")" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install "github.com/nats-io/nats-server/v2@v$pinned" >&2
  at_least "$(version_of "$built")" "$pinned" || { echo "the nats-server built into $built does not report $pinned" >&2; exit 1; }
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium "for the dashboard's end-to-end test"
fi

if [ "${1:-}" = "--nats-path" ]; then
  nats_server
fi
