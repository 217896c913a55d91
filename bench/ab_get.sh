#!/usr/bin/env bash
# GET /order/{id} A/B of two builds of the service in one run, alternated (this machine's figures move 10-20 %
# between runs, so only a same-run comparison says whether a change made lookups slower):
#   OLD=path/to/old/order-service NEW=target/release/order-service bench/ab_get.sh
# Both serve the same N orders (each its own database, both consuming one channel of the dev broker); wrk -t1 -c64
# alternates OLD and NEW for ROUNDS rounds of DUR seconds. With REF=1 bare actix-web (the example actix_return_200,
# one fixed document, no cache, actor or middleware) takes a turn in each round too: the framework's ceiling.
# WORKERS (2) is the HTTP worker count of all of them. Needs release builds of stan-broker and order-generator (and of
# the example, with REF=1).
set -euo pipefail
cd "$(dirname "$0")/.."
R=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}
OLD=${OLD:?OLD=path of the old order-service binary} NEW=${NEW:-$R/order-service}
PG="psql -h 127.0.0.1 -U postgres -qtA"
CL=ab-$$ N=${N:-20000} DUR=${DUR:-5} ROUNDS=${ROUNDS:-3} WORKERS=${WORKERS:-2}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
$R/stan-broker --cluster_id $CL --nats_server nats://127.0.0.1:4222 >/tmp/ab-broker.log 2>&1 & pids+=($!)
for _ in $(seq 50); do grep -q 'Broker ready' /tmp/ab-broker.log 2>/dev/null && break; sleep 0.1; done
for v in old new; do $PG -c "DROP DATABASE IF EXISTS ab_$v"; $PG -c "CREATE DATABASE ab_$v"; done
start() { # name bin port admin
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/ab_$1 STAN_CLUSTER_ID=$CL STAN_CHANNEL=ab STAN_CLIENT_ID=ab-$1 \
  STAN_DURABLE_NAME=ab-$1 STAN_QUEUE_GROUP=ab-$1 HTTP_ADDR=127.0.0.1:$3 ADMIN_ADDR=127.0.0.1:$4 HTTP_WORKERS=$WORKERS \
  RUST_LOG=warn $2 >/tmp/ab-$1.log 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -fsS http://127.0.0.1:$3/readyz >/dev/null 2>&1 && return; sleep 0.2; done; echo "$1 not ready"; exit 1
}
start old $OLD 18181 18182
start new $NEW 18281 18282
$R/order-generator --cluster-id $CL --channel ab --count $N >/tmp/ab-gen.log 2>&1
for v in old new; do
  until [ "$($PG -d ab_$v -c 'SELECT count(*) FROM orders')" -ge $N ]; do sleep 0.2; done
done
$PG -d ab_new -c "SELECT order_uid FROM orders" >/tmp/ab-ids.txt
variants="old new"
if [ -n "${REF:-}" ]; then
  $PG -d ab_new -c "SELECT document FROM orders LIMIT 1" >/tmp/ab-document.json
  $R/examples/actix_return_200 --port 18381 --workers $WORKERS --document /tmp/ab-document.json >/tmp/ab-ref.log 2>&1 & pids+=($!)
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:18381/order/x 2>/dev/null && break; sleep 0.1; done
  variants="old new ref"
fi
for r in $(seq $ROUNDS); do
  for v in $variants; do
    port=$(case $v in old) echo 18181 ;; new) echo 18281 ;; ref) echo 18381 ;; esac)
    rps=$(wrk -t1 -c64 -d${DUR}s -s bench/wrk/get_order.lua http://127.0.0.1:$port -- /tmp/ab-ids.txt | awk '/Requests\/sec/ {print $2}')
    echo "round $r $v $rps"
  done
done
