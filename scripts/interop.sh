#!/usr/bin/env bash
# Makes the broker's interop check with the official Node.js STAN client runnable
# (testkit/tests/conformance/node_client.rs): installs nodejs and npm with apt-get where missing, then installs the
# pinned packages of testkit/interop/node with `npm ci` when node_modules is missing or older than package-lock.json.
set -euo pipefail
LOG_NAME=interop
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../testkit/interop/node"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install "nodejs and npm" nodejs npm
fi

# npm ci writes node_modules/.package-lock.json, so it is older than package-lock.json only when the lock changed.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the node client (npm ci) in testkit/interop/node"
    npm ci --no-audit --no-fund --loglevel=error
fi
