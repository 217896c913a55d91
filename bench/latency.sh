#!/usr/bin/env bash
# End-to-end latency: publish -> first 200 from GET /order/{order_uid}, each order timed on its own while orders arrive
# at a steady background rate, through each source of BENCH_SOURCES (default "stan jetstream": the dev STAN broker,
# then JetStream on the machine's nats-server, a stream of the run's own, deleted at the end). Each source gets a
# fresh database and its own channel or stream; the service runs with its defaults. The client is the example
# e2e_latency (bench/latency/e2e_latency.rs): it publishes generated orders and polls each one every BENCH_POLL_US
# (or a twentieth of the time so far, when longer) until the first 200, so each figure is late by at most one poll
# interval or 5 %, whichever is more, plus one GET round trip.
#
#   bench/latency.sh                                          # 1,000 orders/s for 20 s per source
#   BENCH_LATENCY_SECONDS=5 BENCH_SOURCES=jetstream bench/latency.sh
# Environment: BENCH_LATENCY_RATE (1000 orders/s), BENCH_LATENCY_SECONDS (20), BENCH_POLL_US (250),
# BENCH_LATENCY_TIMEOUT_MS (5000: an order not served by then counts as timed out), BENCH_PROBE_EVERY (10: times one
# order in ten and publishes the rest as background; polling every order would add about half a core of GETs on a
# 2-core machine and measure that load more than the pipeline; 1 times every order), BENCH_SOURCES.
source "$(dirname "$0")/lib.sh"
bench_setup latency

RATE=${BENCH_LATENCY_RATE:-1000}
SECONDS_EACH=${BENCH_LATENCY_SECONDS:-20}
POLL_US=${BENCH_POLL_US:-250}
TIMEOUT_MS=${BENCH_LATENCY_TIMEOUT_MS:-5000}
PROBE_EVERY=${BENCH_PROBE_EVERY:-10}
SOURCES=${BENCH_SOURCES:-stan jetstream}

build_release
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked --example e2e_latency
start_deps

BENCH_STREAMS=()
trap 'status=$?; for stream in "${BENCH_STREAMS[@]}"; do delete_stream "$stream"; done; bench_cleanup "$status"' EXIT

export NATS_URL=$STAN_URL STAN_CHANNEL=orders-latency
export JS_STREAM="ORDERS_LATENCY_$BENCH_ID" JS_SUBJECT="orders.latency.$BENCH_ID"
for SOURCE in $SOURCES; do
    export SOURCE
    log "latency through $SOURCE: $RATE orders/s for $SECONDS_EACH s, polled every $POLL_US µs"
    fresh_database
    [ "$SOURCE" = jetstream ] && BENCH_STREAMS+=("$JS_STREAM")
    start_service
    service_from=$(proc_ticks "$SERVICE_PID")
    (
        "$BIN/examples/e2e_latency" --target "$SOURCE" --service "http://127.0.0.1:$BENCH_HTTP_PORT" --rate "$RATE" \
            --seconds "$SECONDS_EACH" --poll-interval-us "$POLL_US" --timeout-ms "$TIMEOUT_MS" \
            --probe-every "$PROBE_EVERY" --json "$BENCH_TMP/$SOURCE.json" >&2 || die "e2e_latency failed through $SOURCE"
        # This subshell has reaped the client and nothing else: its cutime + cstime are the client's CPU.
        awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$BASHPID/stat" >"$BENCH_TMP/$SOURCE.client-ticks"
    )
    echo "$(($(proc_ticks "$SERVICE_PID") - service_from)) $(cat "$BENCH_TMP/$SOURCE.client-ticks")" \
        >"$BENCH_TMP/$SOURCE.ticks"
    stop_service
    if [ "$SOURCE" = jetstream ]; then
        delete_stream "$JS_STREAM"
        BENCH_STREAMS=()
    fi
done

{
    echo "## End-to-end latency (publish -> first 200 from GET /order/{id})"
    echo
    echo "- command: \`BENCH_LATENCY_RATE=$RATE BENCH_LATENCY_SECONDS=$SECONDS_EACH BENCH_POLL_US=$POLL_US" \
        "BENCH_PROBE_EVERY=$PROBE_EVERY bench/latency.sh\`; service defaults"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); publisher and poller (bench/latency/e2e_latency.rs), dev STAN broker, nats-server," \
        "PostgreSQL and the service on the same machine"
    echo "- each order: from the start of its publish to the first 200 on GET /order/{id}, polled from the start on the" \
        "ticks of a thread that sleeps $POLL_US µs; after a 404 the next GET waits one tick, or a twentieth of the time so" \
        "far when that is longer. Resolution: a figure is late by at most one tick (measured mean in the table) or 5 %," \
        "whichever is more, plus one GET round trip. Not served within $TIMEOUT_MS ms: timed out. Misses before the commit" \
        "are answered 404 (the first may ask PostgreSQL, later ones hit the negative cache). The polls are load of their" \
        "own (GETs per order; the service's CPU includes them; the client is the publisher and poller); BENCH_POLL_US" \
        "trades resolution against it, BENCH_PROBE_EVERY the number of figures."
    echo
    echo "| source | orders/s (asked / published) | orders | timed | served | timed out | failed | p50 (ms) | p90 (ms) |" \
        "p99 (ms) | max (ms) | poll tick (µs, set / measured) | GETs per timed order | CPU s: service / client |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for source in $SOURCES; do
        python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
r["gets_per_order"] = r["gets"] / max(r["timed"], 1)
r["service_s"], r["client_s"] = (int(t) / int(sys.argv[3]) for t in open(sys.argv[2]).read().split())
print("| {target} | {rate:.0f} / {publish_rate:.0f} | {published} | {timed} | {served} | {timed_out} | {failed} |"
      " {p50_ms:.2f} | {p90_ms:.2f} | {p99_ms:.2f} | {max_ms:.2f} | {poll_interval_us} / {measured_tick_us} | {gets_per_order:.1f} |"
      " {service_s:.2f} / {client_s:.2f} |".format(**r))' "$BENCH_TMP/$source.json" "$BENCH_TMP/$source.ticks" "$CLK_TCK"
    done
} | write_results latency.md
