#!/usr/bin/env bash
# Makes the interop test with the official NATS Python client runnable (tests/api/jetstream.rs): a virtualenv in
# .data/nats-py with the pinned nats-py (tests/interop/requirements.txt), created or updated when the pin changed.
# Installs python3-venv with apt-get where the venv module is missing.
set -euo pipefail
LOG_NAME=nats-py
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

venv=.data/nats-py
requirements=tests/interop/requirements.txt

if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv python3-venv
fi

# The copy of the requirements inside the venv records what was installed; a newer pin reinstalls.
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/requirements.txt" ] || [ "$requirements" -nt "$venv/requirements.txt" ]; then
    log "installing nats-py into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
