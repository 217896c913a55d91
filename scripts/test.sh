#!/usr/bin/env bash
# The test command README gives: starts what the tests need (PostgreSQL, nats-server, Chromium with chromedriver for
# tests/browser, Node.js with the official STAN client for the interop check, Prometheus with promtool for the
# dashboard and alert tests, the official NATS Python client for the JetStream interop test, docker-compose for the
# compose check; installs them on a fresh machine),
# then runs the whole suite over real connections. The STAN broker the tests talk to is started in-process by each
# test (testkit), on its own cluster id.
set -euo pipefail
cd "$(dirname "$0")/.."

# services.sh prints the TEST_DATABASE_URL the tests are to use (yours, if set).
services_env=$(./scripts/services.sh)
eval "$services_env"
export TEST_DATABASE_URL
./scripts/browser.sh
./scripts/prometheus.sh
./scripts/interop.sh
./scripts/nats-py.sh
./scripts/compose.sh
# The conformance tests that cannot run against an external STAN server (STAN_CONFORMANCE_URL) record themselves
# here; the harness can only count them as passed, so the summary below says how many were skipped.
skipped="${CARGO_TARGET_DIR:-target}/tmp/conformance-skipped.txt"
rm -f "$skipped"
status=0
cargo test --workspace --locked "$@" || status=$?
if [ -s "$skipped" ]; then
    echo "conformance against an external server: $(wc -l <"$skipped") skipped (counted as passed above):"
    sed 's/^/  /' "$skipped"
fi
exit "$status"
