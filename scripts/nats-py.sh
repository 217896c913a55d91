#!/usr/bin/env bash
# Makes the interop test with the official NATS Python client runnable (tests/api/jetstream.rs): a virtualenv in
# .data/nats-py with the pinned nats-py (tests/interop/requirements.txt), created or updated when the pin changed.
# Installs python3-venv with apt-get where the venv module is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'nats-py: %s\n' "$*" >&2; }
venv=.data/nats-py
requirements=tests/interop/requirements.txt

if ! python3 -m venv --help >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        log "need root to install python3-venv; install it and re-run"
        exit 1
    fi
    log "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

# The copy of the requirements inside the venv records what was installed; a newer pin reinstalls.
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/requirements.txt" ] || [ "$requirements" -nt "$venv/requirements.txt" ]; then
    log "installing nats-py into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
