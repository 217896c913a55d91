#!/usr/bin/env bash
# End-to-end ingest: publish -> validate -> commit -> ack -> cached, timed until the last order is committed and
# served. Two runs, each on a fresh database and its own channel:
#   live     the service runs while order-generator publishes N orders as fast as the broker takes them;
#   backlog  N orders wait in the broker first, then the service starts and works through them.
# The service's resident memory is sampled every 200 ms during each run.
#
#   bench/ingest.sh [N]         # default 200000
#   BENCH_MODES="live" bench/ingest.sh 20000
# Each mode runs with each STAN_MAX_IN_FLIGHT:BATCH_SIZE pair of BENCH_SETTINGS (default "2048:1024 1024:1000", the
# service's defaults and the shallower pipeline of earlier releases). The time from the first commit is also shown: in the backlog mode the
# first ack wait (STAN_ACK_WAIT, 2 s) passes before ratsio delivers, a start-up cost of the client (see README).
source "$(dirname "$0")/lib.sh"
bench_setup ingest

N=${1:-200000}
MODES=${BENCH_MODES:-live backlog}
SETTINGS=${BENCH_SETTINGS:-2048:1024 1024:1000}
DEADLINE=${BENCH_DEADLINE:-900}

build_release
start_deps
SYNC_COMMIT=$($PG -d "$BENCH_DB" -c "SHOW synchronous_commit")

# Samples "ms rss_kib" of PID into FILE every 200 ms while PID lives and FLAG exists.
sample_rss() {
    local pid=$1 file=$2 flag=$3 start
    start=$(now_ns)
    while [ -e "$flag" ] && kill -0 "$pid" 2>/dev/null; do
        echo "$((($(now_ns) - start) / 1000000)) $(rss_kib "$pid")" >>"$file"
        sleep 0.2
    done
}

# Waits until N orders are stored, then until the newest one is served; fails after DEADLINE.
wait_committed_and_served() {
    local last
    wait_stored "$N" "$DEADLINE"
    last=$($PG -d "$BENCH_DB" -c "SELECT order_uid FROM orders ORDER BY id DESC LIMIT 1")
    wait_for "order $last served" 30 curl -fsS "http://127.0.0.1:$BENCH_HTTP_PORT/order/$last"
}

fresh_database() {
    $PG -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null
    $PG -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
}

publish() {
    "$BIN/order-generator" --count "$N" >"$BENCH_TMP/generator-$1.log" 2>&1 ||
        die "order-generator failed: $(tail -n 3 "$BENCH_TMP/generator-$1.log")"
    grep -o '[0-9]* msg/s' "$BENCH_TMP/generator-$1.log" | tail -n 1
}

# One mode; appends "mode in_flight batch publish_rate seconds seconds_from_first_commit rss_start_kib rss_max_kib
# rss_end_kib redelivered" to results.txt.
run_mode() {
    local mode=$1 t0 t1 publish_rate flag="$BENCH_TMP/sampling-$1"
    export STAN_CHANNEL="orders-bench-$mode-$STAN_MAX_IN_FLIGHT"
    fresh_database
    : >"$BENCH_TMP/rss-$mode.txt"
    touch "$flag"
    if [ "$mode" = live ]; then
        start_service
        sample_rss "$SERVICE_PID" "$BENCH_TMP/rss-$mode.txt" "$flag" &
        BENCH_PIDS+=($!)
        t0=$(now_ns)
        publish_rate=$(publish "$mode")
    else
        publish_rate=$(publish "$mode")
        launch_service
        t0=$SERVICE_STARTED_NS
        sample_rss "$SERVICE_PID" "$BENCH_TMP/rss-$mode.txt" "$flag" &
        BENCH_PIDS+=($!)
    fi
    wait_committed_and_served
    t1=$(now_ns)
    # Redeliveries are work done twice: an ack that came later than STAN_ACK_WAIT, or a delivery ratsio lost.
    local redelivered
    redelivered=$(curl -fsS "http://127.0.0.1:$BENCH_ADMIN_PORT/metrics" |
        awk '/^order_service_messages_redelivered_total/ { n += $2 } END { printf "%d", n }')
    # Live, the first commit follows the first publish within milliseconds (and polling starts only after the last
    # publish), so the column applies to the backlog only.
    local steady_ms=0
    [ "$mode" = live ] || steady_ms=$(((t1 - FIRST_STORED_NS) / 1000000))
    rm -f "$flag"
    stop_service
    awk -v mode="$mode $STAN_MAX_IN_FLIGHT $BATCH_SIZE" -v rate="${publish_rate% msg/s}" \
        -v ms="$(((t1 - t0) / 1000000))" -v steady_ms="$steady_ms" -v redelivered="$redelivered" '
        NR == 1 { first = $2 } { last = $2; if ($2 > max) max = $2 }
        END { print mode, rate, ms / 1000, steady_ms / 1000, first, max, last, redelivered }' "$BENCH_TMP/rss-$mode.txt" >>"$BENCH_TMP/results.txt"
    tail -n 1 "$BENCH_TMP/results.txt" >&2
}

for setting in $SETTINGS; do
    export STAN_MAX_IN_FLIGHT=${setting%:*} BATCH_SIZE=${setting#*:}
    for mode in $MODES; do
        log "ingest, $mode, STAN_MAX_IN_FLIGHT=$STAN_MAX_IN_FLIGHT BATCH_SIZE=$BATCH_SIZE: $N orders"
        run_mode "$mode"
    done
done

{
    echo "## End-to-end ingest (publish -> validate -> commit -> ack -> cached)"
    echo
    echo "- command: \`bench/ingest.sh $N\`; synchronous_commit = $SYNC_COMMIT; service defaults:" \
        "STAN_MAX_IN_FLIGHT 2048, BATCH_SIZE 1024"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); generator, dev STAN broker, nats-server, PostgreSQL and the service on the same machine"
    echo "- live: the clock starts when the generator starts publishing; backlog: all $N published first, the clock" \
        "starts when the service starts. Both stop when the last order is committed and served (GET 200)."
    echo
    echo "| mode | max in flight / batch | orders | publish rate (msg/s, PubAck each) | seconds to last served |" \
        "orders/s | orders/s from first commit | redelivered | service RSS start / max / end (MiB) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    awk -v n="$N" '{ steady = $6 > 0 ? sprintf("%.0f", n / $6) : "-"
        printf "| %s | %s / %s | %d | %s | %.1f | %.0f | %s | %d | %.0f / %.0f / %.0f |\n",
        $1, $2, $3, n, $4, $5, n / $5, steady, $10, $7 / 1024, $8 / 1024, $9 / 1024 }' "$BENCH_TMP/results.txt"
} | write_results ingest.md
