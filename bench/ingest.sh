#!/usr/bin/env bash
# End-to-end ingest: publish -> validate -> commit -> ack -> cached, timed until the last order is committed and
# served, through each source of BENCH_SOURCES (default "stan jetstream": the dev STAN broker, then JetStream on the
# machine's nats-server, a stream of the run's own, deleted at the end). Two runs per source, each on a fresh
# database and its own channel or stream:
#   live     the service runs while order-generator publishes N orders as fast as the broker takes them;
#   backlog  N orders wait in the broker first, then the service starts and works through them.
# The service's resident memory is sampled every 200 ms during each run; its CPU time is read at the end.
#
#   bench/ingest.sh [N]         # default 200000
#   BENCH_MODES="live" bench/ingest.sh 20000
#   BENCH_SOURCES=jetstream BENCH_SETTINGS=2048:1024 bench/ingest.sh 20000
# Each mode runs with each STAN_MAX_IN_FLIGHT:BATCH_SIZE pair of BENCH_SETTINGS (default "2048:1024 1024:1000", the
# service's defaults and the shallower pipeline of earlier releases). The time from the first commit is also shown: in the backlog mode the
# first ack wait (STAN_ACK_WAIT, 2 s) passes before ratsio delivers, a start-up cost of the client (see README).
source "$(dirname "$0")/lib.sh"
bench_setup ingest

N=${1:-200000}
MODES=${BENCH_MODES:-live backlog}
SOURCES=${BENCH_SOURCES:-stan jetstream}
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
    local target=(--target stan)
    [ "$SOURCE" = jetstream ] && target=(--target jetstream --url "$NATS_URL" --subject "$JS_SUBJECT")
    "$BIN/order-generator" "${target[@]}" --count "$N" >"$BENCH_TMP/generator-$1.log" 2>&1 ||
        die "order-generator failed: $(tail -n 3 "$BENCH_TMP/generator-$1.log")"
    grep -o '[0-9]* msg/s' "$BENCH_TMP/generator-$1.log" | tail -n 1
}

# CPU seconds (user + system) the process used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Deletes a JetStream stream through the JetStream API, spoken over a plain socket (no NATS CLI here).
delete_stream() {
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/${NATS_PORT:-4222}
        printf 'CONNECT {\"verbose\":false}\r\nSUB _INBOX.bench 1\r\nPUB \$JS.API.STREAM.DELETE.$1 _INBOX.bench 0\r\n\r\n' >&3
        grep -m 1 -a -q success <&3" || log "could not delete the JetStream stream $1"
}
BENCH_STREAMS=()
trap 'for stream in "${BENCH_STREAMS[@]}"; do delete_stream "$stream"; done; bench_cleanup' EXIT

# One mode; appends "source mode in_flight batch publish_rate seconds seconds_from_first_commit rss_start_kib
# rss_max_kib rss_end_kib redelivered cpu_seconds" to results.txt.
run_mode() {
    local mode=$1 t0 t1 publish_rate flag="$BENCH_TMP/sampling-$1"
    export STAN_CHANNEL="orders-bench-$mode-$STAN_MAX_IN_FLIGHT"
    export JS_STREAM="ORDERS_BENCH_${BENCH_ID}_${mode}_$STAN_MAX_IN_FLIGHT" JS_SUBJECT="orders.bench.$BENCH_ID.$mode.$STAN_MAX_IN_FLIGHT"
    fresh_database
    : >"$BENCH_TMP/rss-$mode.txt"
    touch "$flag"
    if [ "$SOURCE" = jetstream ]; then
        BENCH_STREAMS+=("$JS_STREAM")
        if [ "$mode" = backlog ]; then
            # The stream must exist before the backlog is published: one start of the service creates it and the
            # durable consumer (at the start of the empty stream).
            start_service
            stop_service
        fi
    fi
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
    local cpu
    cpu=$(cpu_seconds "$SERVICE_PID")
    # Live, the first commit follows the first publish within milliseconds (and polling starts only after the last
    # publish), so the column applies to the backlog only.
    local steady_ms=0
    [ "$mode" = live ] || steady_ms=$(((t1 - FIRST_STORED_NS) / 1000000))
    rm -f "$flag"
    stop_service
    if [ "$SOURCE" = jetstream ]; then
        delete_stream "$JS_STREAM"
        BENCH_STREAMS=()
    fi
    awk -v mode="$SOURCE $mode $STAN_MAX_IN_FLIGHT $BATCH_SIZE" -v rate="${publish_rate% msg/s}" \
        -v ms="$(((t1 - t0) / 1000000))" -v steady_ms="$steady_ms" -v redelivered="$redelivered" -v cpu="$cpu" '
        NR == 1 { first = $2 } { last = $2; if ($2 > max) max = $2 }
        END { print mode, rate, ms / 1000, steady_ms / 1000, first, max, last, redelivered, cpu }' "$BENCH_TMP/rss-$mode.txt" >>"$BENCH_TMP/results.txt"
    tail -n 1 "$BENCH_TMP/results.txt" >&2
}

export NATS_URL=$STAN_URL
for SOURCE in $SOURCES; do
    export SOURCE
    for setting in $SETTINGS; do
        export STAN_MAX_IN_FLIGHT=${setting%:*} BATCH_SIZE=${setting#*:}
        for mode in $MODES; do
            log "ingest from $SOURCE, $mode, STAN_MAX_IN_FLIGHT=$STAN_MAX_IN_FLIGHT BATCH_SIZE=$BATCH_SIZE: $N orders"
            run_mode "$mode"
        done
    done
done

{
    echo "## End-to-end ingest (publish -> validate -> commit -> ack -> cached)"
    echo
    echo "- command: \`bench/ingest.sh $N\`; synchronous_commit = $SYNC_COMMIT; service defaults:" \
        "STAN_MAX_IN_FLIGHT 2048, BATCH_SIZE 1024"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); generator, dev STAN broker, nats-server (JetStream, file storage), PostgreSQL and the" \
        "service on the same machine"
    echo "- live: the clock starts when the generator starts publishing; backlog: all $N published first, the clock" \
        "starts when the service starts. Both stop when the last order is committed and served (GET 200)."
    echo
    echo "| source | mode | max in flight / batch | orders | publish rate (msg/s, each confirmed) | seconds to last served |" \
        "orders/s | orders/s from first commit | redelivered | service CPU (s) | CPU per order (µs) | service RSS start / max / end (MiB) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -v n="$N" '{ steady = $7 > 0 ? sprintf("%.0f", n / $7) : "-"
        printf "| %s | %s | %s / %s | %d | %s | %.1f | %.0f | %s | %d | %.1f | %.0f | %.0f / %.0f / %.0f |\n",
        $1, $2, $3, $4, n, $5, $6, n / $6, steady, $11, $12, $12 * 1e6 / n, $8 / 1024, $9 / 1024, $10 / 1024 }' "$BENCH_TMP/results.txt"
} | write_results ingest.md
