#!/usr/bin/env bash
# Makes sure the dashboard and alert tests (tests/api/dashboard.rs, tests/api/alerts.rs) can run: Debian's
# prometheus package, which brings promtool too, installed with apt-get where missing. The package's own service is
# not needed: each test starts a Prometheus of its own on a free loopback port.
set -euo pipefail
LOG_NAME=prometheus
source "$(dirname "$0")/lib.sh"

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
# No recommends: the node exporter and the console templates are not needed here.
apt_install "the prometheus package (prometheus and promtool)" --no-install-recommends prometheus
require_commands prometheus promtool
