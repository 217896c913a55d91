#!/usr/bin/env bash
# Makes sure the compose check (tests/api/compose.rs) can run: Debian's docker-compose, installed with apt-get where
# missing. No Docker engine is needed: the test only asks it to validate and resolve docker-compose.yml.
set -euo pipefail

log() { printf 'compose: %s\n' "$*" >&2; }

if command -v docker-compose >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "need root to install the docker-compose package; install it and re-run"
    exit 1
fi
log "installing docker-compose"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null || { log "docker-compose is still missing after the install"; exit 1; }
