#!/usr/bin/env bash
# The run command README gives: starts everything order-service needs on a machine without Docker
# (PostgreSQL, nats-server, the project's dev STAN broker with its file store in .data/stan), builds the service
# and runs it in the foreground on http://127.0.0.1:8081. Ctrl-C stops the service and the broker.
#   scripts/run.sh            # just the service and its dependencies
#   scripts/run.sh --demo     # also publish the sample order and 1,000 random ones (10 % invalid)
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
[ "${1:-}" = "--demo" ] && demo=true

./scripts/services.sh >/dev/null
cargo build --release --locked --bin order-service --bin order-generator -p order-service
cargo build --release --locked --bin stan-broker -p stan-testkit

export STAN_URL=${STAN_URL:-nats://127.0.0.1:4222}
export STAN_CLUSTER_ID=${STAN_CLUSTER_ID:-test-cluster}
export STAN_CHANNEL=${STAN_CHANNEL:-orders}
export DATABASE_URL=${DATABASE_URL:-postgres://order_service:order_service@127.0.0.1:5432/order_service}
export RUST_LOG=${RUST_LOG:-info}

mkdir -p .data
# The file store keeps channels, messages and the service's durable position across restarts of run.sh.
./target/release/stan-broker --cluster_id "$STAN_CLUSTER_ID" --nats_server "$STAN_URL" \
    --store file --dir .data/stan >.data/stan-broker.log 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null || true' EXIT
broker_ready=false
for _ in $(seq 1 300); do
    if grep -q "Broker ready" .data/stan-broker.log 2>/dev/null; then
        broker_ready=true
        break
    fi
    kill -0 "$broker" 2>/dev/null || break
    sleep 0.1
done
if ! $broker_ready; then
    if kill -0 "$broker" 2>/dev/null; then
        echo "run.sh: the STAN broker did not say it was ready within 30 s; its log (.data/stan-broker.log):" >&2
    else
        echo "run.sh: the STAN broker exited before it was ready; its log (.data/stan-broker.log):" >&2
    fi
    cat .data/stan-broker.log >&2
    exit 1
fi

if $demo; then
    (
        # Wait for the service to be ready, then publish.
        for _ in $(seq 1 300); do
            curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break
            sleep 0.2
        done
        ./target/release/order-generator --file tests/fixtures/model.json
        ./target/release/order-generator --count 1000 --invalid-ratio 0.1
        echo "run.sh: try curl http://127.0.0.1:8081/order/b563feb7b2b84b6test"
    ) &
fi

./target/release/order-service
