#!/usr/bin/env bash
# Instructions per GET /order/{id} inside the service (valgrind's callgrind), for several builds: unlike req/s, a
# count that the other processes on the machine do not move, so it can compare builds on a loaded machine.
#   BUILDS="main=/tmp/order-service-main new=target/release/order-service" bench/ir_get.sh
# Each build serves the same ORDERS (2,000) orders from its own database (both consume one channel of the dev
# broker), with one HTTP worker, under callgrind with instrumentation off; it is switched on for N (5,000)
# requests for random existing ids, sent one after another over one keep-alive connection by curl, and the count is
# the instructions of the whole process (every thread) over those requests, divided by N. Needs release builds of
# stan-broker and order-generator, valgrind and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}
BUILDS=${BUILDS:?BUILDS=\"name=binary ...\"}
PG="psql -h 127.0.0.1 -U postgres -qtA"
CL=ir-$$ N=${N:-5000} ORDERS=${ORDERS:-2000}
TMP=$(mktemp -d /tmp/ir-get.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
$R/stan-broker --cluster_id $CL --nats_server nats://127.0.0.1:4222 >$TMP/broker.log 2>&1 & pids+=($!)
for _ in $(seq 50); do grep -q 'Broker ready' $TMP/broker.log 2>/dev/null && break; sleep 0.1; done
port=18481
for build in $BUILDS; do
  name=${build%%=*} bin=${build#*=}
  db=ir_${name//[^a-z0-9]/_}
  $PG -c "DROP DATABASE IF EXISTS $db" && $PG -c "CREATE DATABASE $db"
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db STAN_CLUSTER_ID=$CL STAN_CHANNEL=ir STAN_CLIENT_ID=ir-$name \
  STAN_DURABLE_NAME=ir-$name STAN_QUEUE_GROUP=ir-$name HTTP_ADDR=127.0.0.1:$port ADMIN_ADDR=127.0.0.1:$((port + 1)) \
  HTTP_WORKERS=1 RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/$name.out \
    $bin >$TMP/$name.log 2>&1 & pids+=($!)
  echo "$name $! $port $db" >>$TMP/builds.txt
  port=$((port + 10))
done
while read -r name pid port db; do
  for _ in $(seq 600); do curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS http://127.0.0.1:$port/readyz >/dev/null || { echo "$name not ready"; tail $TMP/$name.log; exit 1; }
done <$TMP/builds.txt
$R/order-generator --cluster-id $CL --channel ir --count $ORDERS >$TMP/gen.log 2>&1
while read -r name pid port db; do
  for _ in $(seq 600); do [ "$($PG -d $db -c 'SELECT count(*) FROM orders')" -ge $ORDERS ] && break; sleep 0.5; done
done <$TMP/builds.txt
first_db=$(awk 'NR == 1 { print $4 }' $TMP/builds.txt)
$PG -d $first_db -c "SELECT order_uid FROM orders ORDER BY random() LIMIT $N" >$TMP/ids.txt
while [ "$(wc -l <$TMP/ids.txt)" -lt $N ]; do cat $TMP/ids.txt $TMP/ids.txt | head -n $N >$TMP/ids2.txt; mv $TMP/ids2.txt $TMP/ids.txt; done
while read -r name pid port db; do
  sed "s|^|url = \"http://127.0.0.1:$port/order/|; s|\$|\"\noutput = \"/dev/null\"|" $TMP/ids.txt >$TMP/$name.curl
  # Warm up (the worker's cache, the connection's buffers), then count only the measured requests.
  head -n 200 $TMP/$name.curl | curl -fsS --config - >/dev/null
  callgrind_control -i on $pid >/dev/null
  codes=$(curl -sS --config $TMP/$name.curl -w '%{http_code}\n' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
  callgrind_control -i off $pid >/dev/null
  callgrind_control -d $pid >/dev/null
  for _ in $(seq 100); do compgen -G "$TMP/$name.out.*" >/dev/null && break; sleep 0.1; done
  ir=$(cat $TMP/$name.out.* | awk '/^totals:/ { s += $2 } END { print s + 0 }')
  echo "$name: $((ir / N)) instructions per request ($N requests, answers:$codes)"
done <$TMP/builds.txt
