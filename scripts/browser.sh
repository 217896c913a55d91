#!/usr/bin/env bash
# Makes sure the browser tests (tests/browser/) can run: Debian's Chromium and its chromedriver, installed with
# apt-get where missing. No browser download: the packages come from the distribution.
set -euo pipefail

log() { printf 'browser: %s\n' "$*" >&2; }

if command -v chromedriver >/dev/null && [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "need root to install chromium and chromium-driver; install them and re-run"
    exit 1
fi
log "installing chromium and chromium-driver"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromedriver >/dev/null || { log "chromedriver is still missing after the install"; exit 1; }
