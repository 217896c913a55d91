#!/usr/bin/env bash
# End-to-end latency: publish -> first 200 from GET /order/{order_uid}, each probe timed on its own while orders
# arrive at a steady background rate, seen by two clients through each source:
# - rust: the example e2e_latency (bench/latency/e2e_latency.rs), our publisher and poller: orders published one by
#   one at the rate, one in BENCH_PROBE_EVERY timed and polled every BENCH_POLL_US (or a twentieth of the time so
#   far, when longer) until the first 200; a figure is late by at most one poll interval or 5 %, plus one GET;
# - node: an outside client (bench/latency/node/outside_latency.js) as an outside harness measures: the official JS
#   client publishing (node-nats-streaming 0.3.2 for STAN, nats.js for JetStream), background orders in bursts
#   from a timer every BENCH_NODE_BURST_MS, one probe every BENCH_NODE_PROBE_MS, each polled on a timer every
#   BENCH_NODE_POLL_MS with one GET in flight; a figure is late by up to one timer period plus one GET.
# Sources (BENCH_SOURCES): stan (the dev STAN broker, testkit/), stan-server (a real nats-streaming-server, the
# binary BENCH_STAN_SERVER, started here with its memory store; never built here, see ../shared/reference-stan.md),
# jetstream (the machine's nats-server, a stream of the run's own, deleted at the end). Every run (source x client x
# service build x round) gets a fresh database, channel or stream, and service, with the service's defaults.
#
#   bench/latency.sh                                          # 1,000 orders/s for 20 s, stan and jetstream, both clients
#   BENCH_STAN_SERVER=/work/ref/bin/nats-streaming-server BENCH_SOURCES="stan-server stan" bench/latency.sh
#   BENCH_LATENCY_RATE=0 BENCH_CLIENTS=node bench/latency.sh  # idle: the probes alone
#   BENCH_SERVICE_BINS="before=/tmp/order-service.main after=target/release/order-service" BENCH_ROUNDS=2 bench/latency.sh
# Environment: BENCH_LATENCY_RATE (1000 orders/s of background; 0 for the node client alone), BENCH_LATENCY_SECONDS
# (20), BENCH_POLL_US (250), BENCH_LATENCY_TIMEOUT_MS (5000: a probe not served by then counts as timed out),
# BENCH_PROBE_EVERY (10: the rust client times one order in ten and publishes the rest as background; polling every
# order would add about half a core of GETs on a 2-core machine and measure that load more than the pipeline),
# BENCH_NODE_BURST_MS (10), BENCH_NODE_PROBE_MS (20), BENCH_NODE_POLL_MS (1), BENCH_SOURCES, BENCH_CLIENTS
# ("rust node"), BENCH_STAN_SERVER, BENCH_SERVICE_BINS (LABEL=PATH ..., service builds to alternate in each round,
# default this checkout's release build), BENCH_ROUNDS (1; the order of the clients and builds alternates by round).
source "$(dirname "$0")/lib.sh"
bench_setup latency

RATE=${BENCH_LATENCY_RATE:-1000}
SECONDS_EACH=${BENCH_LATENCY_SECONDS:-20}
POLL_US=${BENCH_POLL_US:-250}
TIMEOUT_MS=${BENCH_LATENCY_TIMEOUT_MS:-5000}
PROBE_EVERY=${BENCH_PROBE_EVERY:-10}
BURST_MS=${BENCH_NODE_BURST_MS:-10}
PROBE_MS=${BENCH_NODE_PROBE_MS:-20}
NODE_POLL_MS=${BENCH_NODE_POLL_MS:-1}
STAN_SERVER=${BENCH_STAN_SERVER:-}
SOURCES=${BENCH_SOURCES:-stan jetstream}
CLIENTS=${BENCH_CLIENTS:-rust node}
ROUNDS=${BENCH_ROUNDS:-1}
SERVICE_BINS=${BENCH_SERVICE_BINS:-this=$BIN/order-service}
NODE_DIR=bench/latency/node

[ "$RATE" != 0 ] || [ "$CLIENTS" = node ] || die "BENCH_LATENCY_RATE=0 needs BENCH_CLIENTS=node"
case " $SOURCES " in *" stan-server "*)
    [ -x "$STAN_SERVER" ] || die "stan-server needs BENCH_STAN_SERVER, a nats-streaming-server binary" ;;
esac
build_release
case " $CLIENTS " in *" rust "*)
    [ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked --example e2e_latency ;;
esac
case " $CLIENTS " in *" node "*)
    need_apt node nodejs
    need_apt npm npm
    # The versions pinned in package-lock.json, into the folder's node_modules (not in git).
    [ -d "$NODE_DIR/node_modules" ] || (cd "$NODE_DIR" && npm ci --no-audit --no-fund >&2) ;;
esac
start_deps

BENCH_STREAMS=()
trap 'status=$?; for stream in "${BENCH_STREAMS[@]}"; do delete_stream "$stream"; done; bench_cleanup "$status"' EXIT

if [ -n "$STAN_SERVER" ]; then
    STAN_SERVER_PORT=$(free_port)
    STAN_SERVER_CLUSTER="latency-${BENCH_ID//_/-}"
    "$STAN_SERVER" -a 127.0.0.1 -p "$STAN_SERVER_PORT" -cid "$STAN_SERVER_CLUSTER" >"$BENCH_TMP/stan-server.log" 2>&1 &
    BENCH_PIDS+=("$!")
    wait_for "nats-streaming-server" 10 grep -q "Streaming Server is ready" "$BENCH_TMP/stan-server.log"
    STAN_SERVER_VERSION=$("$STAN_SERVER" --version | head -n 1)
fi
DEV_STAN_URL=$STAN_URL DEV_STAN_CLUSTER=$STAN_CLUSTER_ID

# Service builds, in the order of round $1: alternated, so neither always runs first.
builds_in_round() {
    local builds=($SERVICE_BINS)
    if [ $(($1 % 2)) = 0 ]; then printf '%s\n' "${builds[@]}"; else printf '%s\n' "${builds[@]}" | tac; fi
}
clients_in_round() {
    local clients=($CLIENTS)
    if [ $(($1 % 2)) = 0 ]; then printf '%s\n' "${clients[@]}"; else printf '%s\n' "${clients[@]}" | tac; fi
}

# One cache counter of the service's /metrics, by its name and labels as printed.
metric() { awk -v name="$1" '$1 == name { print $2 }' "$2"; }

run=0
for round in $(seq 1 "$ROUNDS"); do
for source in $SOURCES; do
for build in $(builds_in_round "$round"); do
for client in $(clients_in_round "$round"); do
    run=$((run + 1))
    label=${build%%=*}
    SERVICE_BIN=${build#*=}
    [ -x "$SERVICE_BIN" ] || die "no service build at $SERVICE_BIN"
    case $source in
        stan)
            export SOURCE=stan STAN_URL=$DEV_STAN_URL STAN_CLUSTER_ID=$DEV_STAN_CLUSTER
            broker="dev STAN broker" ;;
        stan-server)
            export SOURCE=stan STAN_URL="nats://127.0.0.1:$STAN_SERVER_PORT" STAN_CLUSTER_ID=$STAN_SERVER_CLUSTER
            broker="nats-streaming-server" ;;
        jetstream)
            export SOURCE=jetstream STAN_URL=$DEV_STAN_URL
            broker="JetStream (nats-server)" ;;
        *) die "unknown source $source" ;;
    esac
    export NATS_URL=$STAN_URL STAN_CHANNEL="orders-latency-$run"
    export JS_STREAM="ORDERS_LATENCY_${BENCH_ID}_$run" JS_SUBJECT="orders.latency.$BENCH_ID.$run"
    log "run $run: $client client through $broker, service $label: $RATE orders/s for $SECONDS_EACH s"
    fresh_database
    [ "$SOURCE" = jetstream ] && BENCH_STREAMS+=("$JS_STREAM")
    start_service
    service_from=$(proc_ticks "$SERVICE_PID")
    out="$BENCH_TMP/run-$(printf %03d "$run")"
    (
        case $client in
            rust)
                "$BIN/examples/e2e_latency" --target "$SOURCE" --service "http://127.0.0.1:$BENCH_HTTP_PORT" \
                    --rate "$RATE" --seconds "$SECONDS_EACH" --poll-interval-us "$POLL_US" --timeout-ms "$TIMEOUT_MS" \
                    --probe-every "$PROBE_EVERY" --json "$out.json" >&2 ;;
            node)
                node "$NODE_DIR/outside_latency.js" --target "$SOURCE" --url "$STAN_URL" \
                    --cluster-id "$STAN_CLUSTER_ID" --channel "$STAN_CHANNEL" --subject "$JS_SUBJECT" \
                    --service "http://127.0.0.1:$BENCH_HTTP_PORT" --rate "$RATE" --seconds "$SECONDS_EACH" \
                    --burst-ms "$BURST_MS" --probe-ms "$PROBE_MS" --poll-ms "$NODE_POLL_MS" \
                    --timeout-ms "$TIMEOUT_MS" --json "$out.json" >&2 ;;
            *) die "unknown client $client" ;;
        esac || die "the $client client failed through $broker"
        # This subshell has reaped the client and nothing else: its cutime + cstime are the client's CPU.
        awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$BASHPID/stat" >"$out.client-ticks"
    )
    echo "$(($(proc_ticks "$SERVICE_PID") - service_from)) $(cat "$out.client-ticks")" >"$out.ticks"
    curl -fsS "http://127.0.0.1:$BENCH_ADMIN_PORT/metrics" >"$out.metrics" || : >"$out.metrics"
    echo "$broker|$client|$label|$(metric order_service_cache_read_through_queries_total "$out.metrics")|$(metric \
        'order_service_cache_read_throughs_total{result="found"}' "$out.metrics")" >"$out.row"
    stop_service
    if [ "$SOURCE" = jetstream ]; then
        delete_stream "$JS_STREAM"
        BENCH_STREAMS=()
    fi
done
done
done
done

{
    echo "## End-to-end latency (publish -> first 200 from GET /order/{id}), our client and an outside one"
    echo
    echo "- command: \`BENCH_LATENCY_RATE=$RATE BENCH_LATENCY_SECONDS=$SECONDS_EACH BENCH_POLL_US=$POLL_US" \
        "BENCH_PROBE_EVERY=$PROBE_EVERY BENCH_NODE_BURST_MS=$BURST_MS BENCH_NODE_PROBE_MS=$PROBE_MS" \
        "BENCH_NODE_POLL_MS=$NODE_POLL_MS BENCH_SOURCES=\"$SOURCES\" BENCH_CLIENTS=\"$CLIENTS\" BENCH_ROUNDS=$ROUNDS" \
        "BENCH_SERVICE_BINS=\"$SERVICE_BINS\"${STAN_SERVER:+ BENCH_STAN_SERVER=$STAN_SERVER} bench/latency.sh\`;" \
        "service defaults"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); clients, brokers, PostgreSQL and the service on the same machine"
    echo "- brokers: dev STAN broker (testkit/), ${STAN_SERVER_VERSION:-no nats-streaming-server in this run}" \
        "(memory store), JetStream on nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}')"
    echo "- rust client (bench/latency/e2e_latency.rs): orders one by one at the rate, one in $PROBE_EVERY timed from" \
        "the start of its publish to the first 200, polled on the ticks of a thread that sleeps $POLL_US µs (after a" \
        "404 the next GET waits one tick, or a twentieth of the time so far when longer): late by at most one tick or" \
        "5 %, plus one GET round trip."
    echo "- node client (bench/latency/node/outside_latency.js, node $(node --version 2>/dev/null || echo '-')):" \
        "node-nats-streaming 0.3.2 / nats.js; background orders in bursts every $BURST_MS ms from a timer, one probe" \
        "every $PROBE_MS ms, polled every $NODE_POLL_MS ms on a timer with one GET in flight, over keep-alive" \
        "connections: late by up to one timer period plus one GET round trip."
    echo "- Not served within $TIMEOUT_MS ms: timed out. The polls are load of their own; the service's CPU includes them."
    echo
    echo "| broker | client | service | orders/s (asked / published) | orders | timed | served | timed out | failed |" \
        "p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | GETs per timed order | CPU s: service / client |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for row in "$BENCH_TMP"/run-*.row; do
        out=${row%.row}
        python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
broker, client, label = open(sys.argv[4]).read().split("|")[:3]
r["gets_per_order"] = r["gets"] / max(r["timed"], 1)
r["service_s"], r["client_s"] = (int(t) / int(sys.argv[3]) for t in open(sys.argv[2]).read().split())
print("| {b} | {c} | {l} | {rate:.0f} / {publish_rate:.0f} | {published} | {timed} | {served} | {timed_out} | {failed} |"
      " {p50_ms:.2f} | {p90_ms:.2f} | {p99_ms:.2f} | {max_ms:.2f} | {gets_per_order:.1f} | {service_s:.2f} / {client_s:.2f} |"
      .format(b=broker, c=client, l=label, **r))' "$out.json" "$out.ticks" "$CLK_TCK" "$row"
    done
    echo
    echo "Stages, where the client reports them (the node client: publish -> broker ack, a GET's round trip, the" \
        "round trip of each probe's first 200), and the service's read-through lookups (queries; orders found by" \
        "one, which the cache did not hold yet when asked):"
    echo
    echo "| broker | client | service | broker ack p50 / p99 (ms) | GET p50 / p99 (ms) | serving GET p50 / p99 (ms) |" \
        "read-through queries / found |"
    echo "|---|---|---|---|---|---|---|"
    for row in "$BENCH_TMP"/run-*.row; do
        python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
broker, client, label, queries, found = (open(sys.argv[2]).read().strip().split("|") + ["", ""])[:5]
pair = lambda a, b: "{:.2f} / {:.2f}".format(r[a], r[b]) if a in r else "-"
print("| {} | {} | {} | {} | {} | {} | {} / {} |".format(broker, client, label, pair("ack_p50_ms", "ack_p99_ms"),
      pair("get_p50_ms", "get_p99_ms"), pair("serving_get_p50_ms", "serving_get_p99_ms"), queries or "-", found or "-"))
' "${row%.row}.json" "$row"
    done
} | write_results latency.md
