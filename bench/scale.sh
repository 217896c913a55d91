#!/usr/bin/env bash
# Several instances on one database (issue 12): instance A consumes the channel, instance B serves HTTP and consumes
# nothing (its own, empty channel), so every order B serves was committed by A.
#   1. staleness: while the generator publishes at BENCH_RATE orders/s, a probe picks the newest committed order
#      every few milliseconds and asks B for it at once: time from seeing the commit to B's answer, and B's answers;
#      plus B's change-feed lag (commit to cached without any request), from its own histogram;
#   2. GET throughput on B (wrk) with 0 %, 10 % and 100 % fresh unknown ids, and the database work they cause
#      (lookup queries from B's metrics, transactions from pg_stat_database);
#   3. GET throughput on B restarted with CACHE_MAX_BYTES at a tenth of the orders: uniform ids, and 90 % of the
#      requests on 10 % of the orders; hit rate from B's metrics.
#
#   bench/scale.sh
#
# Environment: BENCH_RATE (ingest orders/s during the staleness probe, 5000), BENCH_STALE_SECONDS (20),
# BENCH_DURATION (wrk seconds per run, 10), BENCH_CONNECTIONS (64), HTTP_WORKERS (both instances', default the
# number of CPUs). Results: bench/results/scale.md.
source "$(dirname "$0")/lib.sh"
bench_setup scale

RATE=${BENCH_RATE:-5000}
STALE_SECONDS=${BENCH_STALE_SECONDS:-20}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
ORDERS=$((RATE * STALE_SECONDS))

need_apt wrk wrk
need_apt curl curl
build_release
start_deps

B_PORT=$(free_port)
B_URL="http://127.0.0.1:$B_PORT"
# Metrics are on B's admin listener.
B_ADMIN_PORT=$(free_port)
B_ADMIN_URL="http://127.0.0.1:$B_ADMIN_PORT"

# launch_b [CACHE_MAX_BYTES]: instance B on a channel of its own that nobody publishes to; sets B_PID.
launch_b() {
    local bound=()
    [ -z "${1:-}" ] || bound=(--cache-max-bytes "$1")
    HTTP_ADDR="127.0.0.1:$B_PORT" ADMIN_ADDR="127.0.0.1:$B_ADMIN_PORT" STAN_CLIENT_ID=bench-b STAN_CHANNEL=orders-bench-idle \
        RUST_LOG=${BENCH_RUST_LOG:-warn} "$BIN/order-service" "${bound[@]}" >"$BENCH_TMP/service-b.log" 2>&1 &
    B_PID=$!
    BENCH_PIDS+=("$B_PID")
    wait_for "instance B" 120 curl -fsS "$B_URL/readyz"
}

STAN_CLIENT_ID=bench-a start_service
launch_b

# metric URL NAME [LABEL_MATCH]: the sum of the samples of NAME (those whose labels contain LABEL_MATCH) at URL.
metric() {
    curl -fsS "$1/metrics" | awk -v name="$2" -v match_="${3:-}" '
        $1 == name || index($1, name "{") == 1 { if (match_ == "" || index($1, match_) > 0) sum += $NF }
        END { printf "%.0f\n", sum + 0 }'
}
db_transactions() {
    $PG -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$BENCH_DB'"
}

log "staleness: $ORDERS orders published to A at $RATE/s, B probed"
"$BIN/order-generator" --count "$ORDERS" --rate "$RATE" >"$BENCH_TMP/generator.log" 2>&1 &
GENERATOR_PID=$!
BENCH_PIDS+=("$GENERATOR_PID")
python3 - "$BENCH_DB" "$B_PORT" "$GENERATOR_PID" >"$BENCH_TMP/staleness.txt" <<'PY'
# Polls PostgreSQL (one psql session) for the newest committed order and GETs it from B at once, over one kept-alive
# connection, until the generator ends and the commits stop; prints "count non200 p50_ms p99_ms max_ms".
import http.client, os, subprocess, sys, time
db, port, generator = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
psql = subprocess.Popen(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qtA"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
def ask(sql):
    psql.stdin.write(sql + ";\n")
    psql.stdin.flush()
    return psql.stdout.readline().strip()
def generator_running():
    try:
        with open(f"/proc/{generator}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
last, samples, bad = int(ask("SELECT coalesce(max(id), 0) FROM orders")), [], 0
deadline = time.monotonic() + 900
last_new = time.monotonic()
# Until the generator is done and no order was committed for two seconds (A commits the last ones after it ends).
while (generator_running() or time.monotonic() - last_new < 2) and time.monotonic() < deadline:
    row = ask(f"SELECT coalesce((SELECT id || ' ' || order_uid FROM orders WHERE id > {last} "
              "ORDER BY id DESC LIMIT 1), '-')")
    if row == "-":
        time.sleep(0.002)
        continue
    last_new = time.monotonic()
    seen = time.perf_counter()
    last, uid = int(row.split()[0]), row.split()[1]
    connection.request("GET", f"/order/{uid}")
    response = connection.getresponse()
    response.read()
    samples.append((time.perf_counter() - seen) * 1000)
    bad += response.status != 200
    time.sleep(0.005)
samples.sort()
def q(p):
    return f"{samples[min(len(samples) - 1, int(p * len(samples)))]:.2f}" if samples else "-"
print(len(samples), bad, q(0.5), q(0.99), q(1.0))
PY
wait "$GENERATOR_PID" || die "the generator failed: $(tail -n 3 "$BENCH_TMP/generator.log")"
wait_stored "$ORDERS" 600
read -r probes probes_bad stale_p50 stale_p99 stale_max <"$BENCH_TMP/staleness.txt"
# B's feed lag: quantiles of its histogram, linear within a bucket as PromQL's histogram_quantile.
read -r lag_p50 lag_p99 lag_batches < <(curl -fsS "$B_ADMIN_URL/metrics" | python3 -c '
import sys
buckets = []
for line in sys.stdin:
    if line.startswith("order_service_feed_lag_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
total = buckets[-1][1] if buckets else 0
def quantile(q):
    if total == 0:
        return "-"
    rank, low, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return f">{low * 1000:g}"
            return f"{(low + (le - low) * (rank - below) / max(count - below, 1)) * 1000:.1f}"
        low, below = le, count
print(quantile(0.5), quantile(0.99), f"{total:.0f}")')
feed_orders=$(metric "$B_ADMIN_URL" order_service_feed_orders_total)

$PG -d "$BENCH_DB" -c "SELECT order_uid FROM orders" >"$BENCH_TMP/ids.txt"
# run_wrk NAME LUA_ARGS...: wrk against B with get_order_scale.lua; appends to $BENCH_TMP/wrk.txt
# "name req/s p99 non2xx lookup_queries/s db_transactions/s hit_rate".
run_wrk() {
    local name=$1 out="$BENCH_TMP/wrk-$RANDOM.txt"
    shift
    local queries hits misses tx
    queries=$(metric "$B_ADMIN_URL" order_service_cache_read_through_queries_total)
    hits=$(metric "$B_ADMIN_URL" order_service_cache_lookups_total 'result="hit"')
    misses=$(metric "$B_ADMIN_URL" order_service_cache_lookups_total 'result="miss"')
    tx=$(db_transactions)
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/wrk/get_order_scale.lua "$B_URL" -- \
        "$BENCH_TMP/ids.txt" "$@" >"$out"
    # pg_stat_database shows a backend's counts up to a second after the fact.
    sleep 1.2
    queries=$(($(metric "$B_ADMIN_URL" order_service_cache_read_through_queries_total) - queries))
    hits=$(($(metric "$B_ADMIN_URL" order_service_cache_lookups_total 'result="hit"') - hits))
    misses=$(($(metric "$B_ADMIN_URL" order_service_cache_lookups_total 'result="miss"') - misses))
    tx=$(($(db_transactions) - tx))
    awk -v name="$name" -v q="$queries" -v tx="$tx" -v d="$DURATION" -v h="$hits" -v m="$misses" '
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad = $5 }
        END { printf "%s %s %s %d %.0f %.0f %.1f\n", name, rps, p99, bad + 0, q / d, tx / d,
              (h + m) ? 100 * h / (h + m) : 0 }' "$out" >>"$BENCH_TMP/wrk.txt"
    tail -n 1 "$BENCH_TMP/wrk.txt" >&2
}

log "GET on B: 0 %, 10 %, 100 % fresh unknown ids"
run_wrk "known ids" 0
run_wrk "10 % unknown" 0.1
run_wrk "100 % unknown" 1

# A tenth of the orders as the cache charges them (the stored text is the served bytes).
bound=$($PG -d "$BENCH_DB" -c "
    SELECT (sum(octet_length(document::text) + octet_length(order_uid) + 64) / 10)::bigint FROM orders")
log "restarting B with CACHE_MAX_BYTES=$bound (a tenth of the orders)"
stop_pid "$B_PID"
launch_b "$bound"
bound_restored=$(metric "$B_ADMIN_URL" order_service_cache_restored_orders)
run_wrk "bound, uniform ids" 0
run_wrk "bound, 90 % on 10 %" 0 0.1 0.9
b_rss=$(rss_kib "$B_PID")

{
    echo "## Several instances on one database: staleness, read-through, the bound"
    echo
    echo "- command: \`bench/scale.sh\` (BENCH_RATE=$RATE, BENCH_STALE_SECONDS=$STALE_SECONDS; wrk -t1" \
        "-c$CONNECTIONS -d${DURATION}s against instance B)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); PostgreSQL, nats-server, the broker, both instances and the load generators share it"
    echo "- $ORDERS orders committed by A; B consumes nothing and learns them through its change feed and read-through"
    echo
    echo "| staleness (commit on A → answer from B) | value |"
    echo "|---|---|"
    echo "| probes: the newest committed order, asked of B at once | $probes, of which not 200: $probes_bad |"
    echo "| from seeing the commit to B's answer, p50 / p99 / max | $stale_p50 / $stale_p99 / $stale_max ms |"
    echo "| B's change feed, transaction start → cached without a request, p50 / p99 ($lag_batches batches) | $lag_p50 / $lag_p99 ms |"
    echo "| orders B's feed delivered | $feed_orders |"
    echo
    echo "| GET on B | req/s | p99 | non-2xx | lookup queries/s | database transactions/s | cache hit rate |"
    echo "|---|---|---|---|---|---|---|"
    while read -r line; do
        # The name has spaces; the six numbers are the last fields.
        set -- $line
        local_fields=("$@")
        n=${#local_fields[@]}
        name="${local_fields[*]:0:n-6}"
        echo "| $name | ${local_fields[n-6]} | ${local_fields[n-5]} | ${local_fields[n-4]} | ${local_fields[n-3]}" \
            "| ${local_fields[n-2]} | ${local_fields[n-1]} % |"
    done <"$BENCH_TMP/wrk.txt"
    echo
    echo "With the bound ($bound bytes per worker cache): $bound_restored orders restored at start; B's RSS at the" \
        "end $((b_rss / 1024)) MiB."
} | write_results scale.md
