#!/usr/bin/env bash
# Makes the broker's interop check with the official Node.js STAN client runnable
# (testkit/tests/conformance/node_client.rs): installs nodejs and npm with apt-get where missing, then installs the
# pinned packages of testkit/interop/node with `npm ci` when node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../testkit/interop/node"

log() { printf 'interop: %s\n' "$*" >&2; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        log "need root to install nodejs and npm; install them and re-run"
        exit 1
    fi
    log "installing nodejs and npm"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

# npm ci writes node_modules/.package-lock.json, so it is older than package-lock.json only when the lock changed.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the node client (npm ci) in testkit/interop/node"
    npm ci --no-audit --no-fund --loglevel=error
fi
