#!/usr/bin/env bash
# End-to-end ingest: publish -> validate -> commit -> ack -> cached, timed until the last order is committed and
# served, through each source of BENCH_SOURCES (default "stan jetstream": the dev STAN broker, then JetStream on the
# machine's nats-server, a stream of the run's own, deleted at the end). Two runs per source, each on a fresh
# database and its own channel or stream:
#   live     the service runs while order-generator publishes N orders as fast as the broker takes them;
#   backlog  N orders wait in the broker first, then the service starts and works through them.
# The service's resident memory is sampled every 200 ms during each run. CPU time (user + system, /proc/PID/stat) is
# read for each process the orders pass through, as the difference over the span in which it works for the run:
#   live     service, PostgreSQL, nats-server, broker: from the first publish to the last order served;
#   backlog  service: its whole life (the clock starts at its start); PostgreSQL: the same span; nats-server and
#            broker: the publish, plus the span of the service;
#   publisher (order-generator): its whole life, read from the shell that reaped it.
# PostgreSQL is the whole cluster (postmaster, backends, walwriter, checkpointer, ..., exited backends included) and
# nats-server the machine's (it carries STAN's traffic too: the broker is a client of it); both count whatever else
# uses them meanwhile. The broker is not in JetStream's path and shows "-" there.
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
need_apt ss iproute2
start_deps
PG_PID=$(listener_pid 5432)
NATS_PID=$(listener_pid "${NATS_PORT:-4222}")
[ -n "$PG_PID" ] && [ -n "$NATS_PID" ] || die "PostgreSQL or nats-server not found listening on 127.0.0.1 (ss -ltnp)"
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

publish() {
    local target=(--target stan)
    [ "$SOURCE" = jetstream ] && target=(--target jetstream --url "$NATS_URL" --subject "$JS_SUBJECT")
    "$BIN/order-generator" "${target[@]}" --count "$N" >"$BENCH_TMP/generator-$1.log" 2>&1 ||
        die "order-generator failed: $(tail -n 3 "$BENCH_TMP/generator-$1.log")"
    # This subshell has reaped the generator, and nothing else yet: its cutime + cstime are the generator's CPU.
    awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$BASHPID/stat" >"$BENCH_TMP/publisher-ticks"
    grep -o '[0-9]* msg/s' "$BENCH_TMP/generator-$1.log" | tail -n 1
}

# Ticks of the shared processes a run is charged with: postgresql, nats, broker.
ticks_of() {
    case $1 in
    postgresql) tree_ticks "$PG_PID" ;;
    nats) proc_ticks "$NATS_PID" ;;
    broker) proc_ticks "$BROKER_PID" ;;
    esac
}
# span_begin PROCESS...; span_end PROCESS...: adds the ticks each used in between to RUN_TICKS.
declare -A SPAN_FROM RUN_TICKS
span_begin() { local p; for p in "$@"; do SPAN_FROM[$p]=$(ticks_of "$p"); done; }
span_end() { local p; for p in "$@"; do RUN_TICKS[$p]=$((${RUN_TICKS[$p]:-0} + $(ticks_of "$p") - SPAN_FROM[$p])); done; }

BENCH_STREAMS=()
trap 'status=$?; for stream in "${BENCH_STREAMS[@]}"; do delete_stream "$stream"; done; bench_cleanup "$status"' EXIT

# One mode; appends "source mode in_flight batch publish_rate seconds seconds_from_first_commit rss_start_kib
# rss_max_kib rss_end_kib redelivered" and the CPU seconds of "service postgresql nats broker publisher feed" to
# results.txt (feed: the backend of the service's change-feed connection, part of postgresql).
run_mode() {
    local mode=$1 t0 t1 publish_rate flag="$BENCH_TMP/sampling-$1" service_from=0
    RUN_TICKS=()
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
        service_from=$(proc_ticks "$SERVICE_PID")
        span_begin postgresql nats broker
        t0=$(now_ns)
        publish_rate=$(publish "$mode")
    else
        span_begin nats broker
        publish_rate=$(publish "$mode")
        span_end nats broker
        span_begin postgresql nats broker
        launch_service
        t0=$SERVICE_STARTED_NS
        sample_rss "$SERVICE_PID" "$BENCH_TMP/rss-$mode.txt" "$flag" &
        BENCH_PIDS+=($!)
    fi
    wait_committed_and_served
    t1=$(now_ns)
    local cpu feed_pid feed_ticks=0
    cpu="$(($(proc_ticks "$SERVICE_PID") - service_from))"
    span_end postgresql nats broker
    # The backend of the service's change-feed connection, whole life (it starts with the service): the part of
    # PostgreSQL's CPU that reads back what was committed, apart from the writes.
    feed_pid=$($PG -d "$BENCH_DB" -c "SELECT pid FROM pg_stat_activity
        WHERE application_name = 'order-service feed' AND datname = current_database() LIMIT 1")
    [ -z "$feed_pid" ] || feed_ticks=$(proc_ticks "$feed_pid")
    cpu="$cpu $((RUN_TICKS[postgresql])) $((RUN_TICKS[nats])) $((RUN_TICKS[broker])) $(cat "$BENCH_TMP/publisher-ticks")"
    cpu="$cpu $feed_ticks"
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
    if [ "$SOURCE" = jetstream ]; then
        delete_stream "$JS_STREAM"
        BENCH_STREAMS=()
    fi
    awk -v mode="$SOURCE $mode $STAN_MAX_IN_FLIGHT $BATCH_SIZE" -v rate="${publish_rate% msg/s}" \
        -v ms="$(((t1 - t0) / 1000000))" -v steady_ms="$steady_ms" -v redelivered="$redelivered" -v cpu="$cpu" \
        -v hz="$CLK_TCK" '
        NR == 1 { first = $2 } { last = $2; if ($2 > max) max = $2 }
        END { n = split(cpu, t, " "); seconds = ""; for (i = 1; i <= n; i++) seconds = seconds sprintf(" %.2f", t[i] / hz)
            print mode, rate, ms / 1000, steady_ms / 1000, first, max, last, redelivered seconds }' \
        "$BENCH_TMP/rss-$mode.txt" >>"$BENCH_TMP/results.txt"
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
    echo "- CPU per order: user + system time from /proc/PID/stat (1/$CLK_TCK s ticks) over the span each process works" \
        "for the run: live, the clock's span (the generator: its whole life); backlog, the service and PostgreSQL over" \
        "the clock's span, nats-server and the broker over the publish and the clock's span. PostgreSQL is all of the" \
        "cluster (backends and background processes); it and nats-server (which carries STAN's traffic too) are the" \
        "machine's and count whatever else used them meanwhile. The broker is not in JetStream's path (-). The change" \
        "feed's column is the PostgreSQL backend of the service's feed connection, over its life (it starts with the" \
        "service): reading back what was committed, apart from writing it."
    echo
    echo "| source | mode | max in flight / batch | orders | publish rate (msg/s, each confirmed) | seconds to last served |" \
        "orders/s | orders/s from first commit | redelivered | service µs/order | PostgreSQL (all of it) µs/order |" \
        "of which the service's change feed µs/order |" \
        "nats-server µs/order | broker µs/order | publisher µs/order | all µs/order |" \
        "CPU s: service / PostgreSQL / nats-server / broker / publisher | service RSS start / max / end (MiB) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -v n="$N" '{ steady = $7 > 0 ? sprintf("%.0f", n / $7) : "-"
        broker = $1 == "jetstream" ? "-" : sprintf("%.1f", $15 * 1e6 / n)
        total = $12 + $13 + $14 + ($1 == "jetstream" ? 0 : $15) + $16
        printf "| %s | %s | %s / %s | %d | %s | %.1f | %.0f | %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %.1f | %.1f |",
            $1, $2, $3, $4, n, $5, $6, n / $6, steady, $11, $12 * 1e6 / n, $13 * 1e6 / n, $17 * 1e6 / n,
            $14 * 1e6 / n, broker, $16 * 1e6 / n, total * 1e6 / n
        printf " %.2f / %.2f / %.2f / %s / %.2f | %.0f / %.0f / %.0f |\n", $12, $13, $14,
            $1 == "jetstream" ? "-" : sprintf("%.2f", $15), $16, $8 / 1024, $9 / 1024, $10 / 1024 }' "$BENCH_TMP/results.txt"
} | write_results ingest.md
