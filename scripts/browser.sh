#!/usr/bin/env bash
# Makes sure the browser tests (tests/browser/) can run: Debian's Chromium and its chromedriver, installed with
# apt-get where missing. No browser download: the packages come from the distribution.
set -euo pipefail
LOG_NAME=browser
source "$(dirname "$0")/lib.sh"

if command -v chromedriver >/dev/null && [ -x /usr/bin/chromium ]; then
    exit 0
fi
apt_install "chromium and chromium-driver" chromium chromium-driver
require_commands chromedriver
