#!/usr/bin/env bash
# Makes sure the compose check (tests/api/compose.rs) can run: Debian's docker-compose, installed with apt-get where
# missing. No Docker engine is needed: the test only asks it to validate and resolve docker-compose.yml.
set -euo pipefail
LOG_NAME=compose
source "$(dirname "$0")/lib.sh"

if command -v docker-compose >/dev/null; then
    exit 0
fi
apt_install "the docker-compose package" --no-install-recommends docker-compose
require_commands docker-compose
