#!/usr/bin/env bash
# Makes sure the dashboard and alert tests (tests/api/dashboard.rs, tests/api/alerts.rs) can run: Debian's
# prometheus package, which brings promtool too, installed with apt-get where missing. The package's own service is
# not needed: each test starts a Prometheus of its own on a free loopback port.
set -euo pipefail

log() { printf 'prometheus: %s\n' "$*" >&2; }

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "need root to install the prometheus package (prometheus and promtool); install it and re-run"
    exit 1
fi
log "installing prometheus (with promtool)"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
# No recommends: the node exporter and the console templates are not needed here.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
for tool in prometheus promtool; do
    command -v "$tool" >/dev/null || { log "$tool is still missing after the install"; exit 1; }
done
