#!/usr/bin/env bash
# GET /order/{id} under load, against two references answering the same path with the same document from memory:
# nginx `return 200` (the ceiling of this machine) and actix-web with a fixed body (bench/reference: the ceiling of the
# framework, with no cache, actor or middleware). Runs alternate service, nginx, actix-web, so a noisy machine hits all
# alike, once per worker count. Then constant-rate runs with oha (latency percentiles, corrected for coordinated
# omission) and a latency plot.
#
#   bench/http.sh [ORDERS]      # default 20000 orders, seeded through the pipeline
#
# Environment: BENCH_DURATION (wrk seconds per run, 10), BENCH_ROUNDS (A B pairs, 3), BENCH_CONNECTIONS (64),
# BENCH_RATES ("5000 10000 20000"; one more rate is always added, 0.7 of the service's mean wrk rate with its default
# worker count, as the goal is p99 <= 2 ms up to there), BENCH_RATE_DURATION (oha seconds per rate, 10), BENCH_WORKERS
# (worker counts to compare, the same for all three servers; default: the number of CPUs, then one less, as wrk takes
# a core).
# Results: bench/results/http.md and bench/results/latency.png.
source "$(dirname "$0")/lib.sh"
bench_setup http

ORDERS=${1:-20000}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
RATES=${BENCH_RATES:-5000 10000 20000}
RATE_DURATION=${BENCH_RATE_DURATION:-10}
WORKER_COUNTS=${BENCH_WORKERS:-$(nproc)}
[ -n "${BENCH_WORKERS:-}" ] || [ "$(nproc)" -lt 2 ] || WORKER_COUNTS="$WORKER_COUNTS $(($(nproc) - 1))"
export HTTP_WORKERS=${WORKER_COUNTS%% *}
CARGO_TOOLS="${CARGO_HOME:-$HOME/.cargo}/bench-tools"

need_apt wrk wrk
need_apt nginx nginx-light
need_apt curl curl
if ! command -v oha >/dev/null && [ ! -x "$CARGO_TOOLS/bin/oha" ]; then
    log "installing oha (constant-rate HTTP load generator) from crates.io into $CARGO_TOOLS"
    # With its default features: oha 1.16 does not compile without them.
    cargo install oha --locked --root "$CARGO_TOOLS"
fi
OHA=$(command -v oha || echo "$CARGO_TOOLS/bin/oha")
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib from PyPI (for the latency plot)"
    python3 -m pip install -q matplotlib || log "no matplotlib: the plot is skipped"
fi

build_release
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked --example actix_return_200
start_deps
start_service
log "seeding $ORDERS orders through the pipeline"
seed_orders "$ORDERS"

SERVICE_URL="http://127.0.0.1:$BENCH_HTTP_PORT"
NGINX_URL="http://127.0.0.1:$BENCH_NGINX_PORT"
$PG -d "$BENCH_DB" -c "SELECT order_uid FROM orders" >"$BENCH_TMP/ids.txt"
sed "s|^|$SERVICE_URL/order/|" "$BENCH_TMP/ids.txt" >"$BENCH_TMP/urls.txt"

# The reference document: one order as the service serves it, of the average size, so nginx sends as many bytes per
# response as the service does on average.
sample_id=$($PG -d "$BENCH_DB" -c "
    SELECT order_uid FROM orders
    ORDER BY abs(octet_length(document::text) - (SELECT avg(octet_length(document::text)) FROM orders)) LIMIT 1")
curl -fsS "$SERVICE_URL/order/$sample_id" -o "$BENCH_TMP/document.json"
# start_nginx WORKERS: nginx answering the document on $BENCH_NGINX_PORT.
start_nginx() {
    mkdir -p "$BENCH_TMP/nginx"
    python3 - "$BENCH_TMP/document.json" bench/nginx/nginx.conf.template "$BENCH_TMP/nginx/nginx.conf" \
        "$BENCH_TMP/nginx" "$BENCH_NGINX_PORT" "$1" <<'EOF'
import sys
document_path, template_path, out_path, prefix, port, workers = sys.argv[1:]
document = open(document_path, encoding="utf-8").read()
if "$" in document:
    sys.exit("the document holds a '$', which nginx would read as a variable")
quoted = document.replace("\\", "\\\\").replace("'", "\\'")
conf = open(template_path, encoding="utf-8").read()
for key, value in (("PREFIX", prefix), ("PORT", port), ("WORKERS", workers), ("DOCUMENT", quoted)):
    conf = conf.replace(f"@{key}@", value)
open(out_path, "w", encoding="utf-8").write(conf)
EOF
    nginx -p "$BENCH_TMP/nginx" -c "$BENCH_TMP/nginx/nginx.conf" >"$BENCH_TMP/nginx.log" 2>&1 &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    wait_for nginx 10 curl -fsS "$NGINX_URL/order/$sample_id"
}

# start_actix WORKERS: the actix-web reference answering the document on $BENCH_ACTIX_PORT.
start_actix() {
    "$BIN/examples/actix_return_200" --port "$BENCH_ACTIX_PORT" --workers "$1" --document "$BENCH_TMP/document.json" \
        >"$BENCH_TMP/actix.log" 2>&1 &
    ACTIX_PID=$!
    BENCH_PIDS+=("$ACTIX_PID")
    wait_for "the actix-web reference" 10 curl -fsS "$ACTIX_URL/order/$sample_id"
}

BENCH_ACTIX_PORT=$(free_port)
ACTIX_URL="http://127.0.0.1:$BENCH_ACTIX_PORT"
start_nginx "$HTTP_WORKERS"
start_actix "$HTTP_WORKERS"
for url in "$NGINX_URL" "$ACTIX_URL"; do
    cmp -s <(curl -fsS "$url/order/$sample_id") "$BENCH_TMP/document.json" ||
        die "$url does not answer the same document as the service"
done

# run_wrk NAME URL SCRIPT [ARG...]: one wrk run (the ARGs go to the script after the ids file); appends
# "name rps p50 p99 non2xx" to $BENCH_TMP/wrk.txt.
run_wrk() {
    local name=$1 url=$2 script=$3 out="$BENCH_TMP/wrk-$1-$RANDOM.txt"
    shift 3
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" "$url" -- "$BENCH_TMP/ids.txt" "$@" >"$out"
    awk -v name="$name" '
        /Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { bad = $5 }
        /Socket errors:/ { errors = $0 }
        END { printf "%s %s %s %s %d\n", name, rps, p50, p99, bad + 0 }' "$out" >>"$BENCH_TMP/wrk.txt"
    tail -n 1 "$BENCH_TMP/wrk.txt" >&2
}

for workers in $WORKER_COUNTS; do
    if [ "$workers" != "$HTTP_WORKERS" ]; then
        export HTTP_WORKERS=$workers
        stop_service && start_service
        stop_pid "$NGINX_PID" && start_nginx "$workers"
        stop_pid "$ACTIX_PID" && start_actix "$workers"
    fi
    log "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $workers workers each, $ROUNDS rounds of service, nginx, actix-web"
    for round in $(seq 1 "$ROUNDS"); do
        run_wrk "service-w$workers" "$SERVICE_URL" bench/wrk/get_order.lua
        run_wrk "nginx-w$workers" "$NGINX_URL" bench/wrk/get_order.lua
        run_wrk "actix-web-w$workers" "$ACTIX_URL" bench/wrk/get_order.lua
    done
done
# The mixed and constant-rate runs use the service's default worker count.
if [ "$HTTP_WORKERS" != "${WORKER_COUNTS%% *}" ]; then
    export HTTP_WORKERS=${WORKER_COUNTS%% *}
    stop_service && start_service
fi
for round in $(seq 1 "$ROUNDS"); do
    run_wrk "service-mixed-w$HTTP_WORKERS" "$SERVICE_URL" bench/wrk/get_order.lua 0.1
done

# 0.7 of the most this box serves: the service's mean wrk rate with its default worker count.
SEVENTY_RATE=$(awk -v name="service-w$HTTP_WORKERS" '$1 == name { sum += $2; n++ } END { if (n) printf "%d", 0.7 * sum / n }' \
    "$BENCH_TMP/wrk.txt")
[ -z "$SEVENTY_RATE" ] || RATES="$RATES $SEVENTY_RATE"
log "oha at constant rates: $RATES req/s, ${RATE_DURATION}s each"
for rate in $RATES; do
    "$OHA" --no-tui --urls-from-file "$BENCH_TMP/urls.txt" -z "${RATE_DURATION}s" -q "$rate" \
        -c "$CONNECTIONS" --latency-correction --output-format json -o "$BENCH_TMP/oha-$rate.json"
    # A pause between rates, so one rate's backlog never spills into the next (bounded: 2 s).
    sleep 2
done

service_rss=$(rss_kib "$SERVICE_PID")
{
    echo "## GET /order/{id}: order-service vs nginx \`return 200\` vs actix-web with a fixed body"
    echo
    echo "- command: \`bench/http.sh $ORDERS\` (wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds of" \
        "service, nginx, actix-web per worker count)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); load generator on the same machine"
    echo "- service: $ORDERS orders cached, RUST_LOG=warn, RSS $((service_rss / 1024)) MiB; nginx" \
        "$(nginx -v 2>&1 | cut -d/ -f2); actix-web reference: bench/reference/actix_return_200.rs; all three answer the" \
        "same $(stat -c %s "$BENCH_TMP/document.json")-byte document (the average size of the cached ones); -wN: N" \
        "workers each (HTTP_WORKERS, worker_processes, --workers)"
    echo
    python3 - "$BENCH_TMP/wrk.txt" "$BENCH_TMP" "$RATES" "$SEVENTY_RATE" <<'EOF'
import json, statistics, sys
wrk_path, tmp, rates, seventy = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
runs = {}
order = []
for line in open(wrk_path):
    name, rps, p50, p99, bad = line.split()
    if name not in runs:
        order.append(name)
    runs.setdefault(name, []).append((float(rps), p50, p99, int(bad)))
print("| target | runs (req/s) | mean req/s | p50 / p99 (last run) | non-2xx |")
print("|---|---|---|---|---|")
for name in order:
    rs = runs[name]
    print(f"| {name} | {', '.join(f'{r[0]:,.0f}' for r in rs)} | {statistics.mean(r[0] for r in rs):,.0f} "
          f"| {rs[-1][1]} / {rs[-1][2]} | {sum(r[3] for r in rs)} |")
def mean(name):
    return statistics.mean(r[0] for r in runs[name])
print()
print("| workers | service / nginx | actix-web / nginx (the framework's ceiling) | service / actix-web |")
print("|---|---|---|---|")
for workers in sorted({n.rsplit("-w", 1)[1] for n in runs if n.startswith("service-w")}, reverse=True):
    service, nginx, actix = (f"{t}-w{workers}" for t in ("service", "nginx", "actix-web"))
    if all(n in runs for n in (service, nginx, actix)):
        pairs = ", ".join(f"{s[0] / n[0]:.2f}" for s, n in zip(runs[service], runs[nginx]))
        print(f"| {workers} | **{mean(service) / mean(nginx):.2f}x** (runs: {pairs}) "
              f"| {mean(actix) / mean(nginx):.2f}x | {mean(service) / mean(actix):.2f}x |")
print()
print("### Constant rate (oha, latency corrected for coordinated omission)")
print()
print("| target rate | achieved req/s | success | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|---|")
for rate in rates:
    try:
        data = json.load(open(f"{tmp}/oha-{rate}.json"))
    except (OSError, ValueError) as error:
        print(f"| {rate} | failed: {error} | | | | | |")
        continue
    s, p = data["summary"], data["latencyPercentiles"]
    ms = lambda v: "-" if v is None else f"{v * 1000:.2f}"
    label = f"{int(rate):,} (0.7 x max)" if rate == seventy else f"{int(rate):,}"
    print(f"| {label} | {s['requestsPerSec']:,.0f} | {s['successRate'] * 100:.2f} % | {ms(p['p50'])} "
          f"| {ms(p['p90'])} | {ms(p['p99'])} | {ms(s['slowest'])} |")
EOF
} | write_results http.md

python3 - "$BENCH_TMP" "$RATES" bench/results/latency.png <<'EOF' || log "no plot: matplotlib missing?"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
tmp, rates, out = sys.argv[1], sys.argv[2].split(), sys.argv[3]
fig, ax = plt.subplots(figsize=(8, 5))
for rate in rates:
    data = json.load(open(f"{tmp}/oha-{rate}.json"))
    points = sorted((float(k[1:]), v * 1000) for k, v in data["latencyPercentiles"].items() if v is not None)
    # x = 1 / (1 - percentile): the usual HdrHistogram layout, so the tail gets room.
    ax.plot([1 / (1 - q / 100) if q < 100 else 1e5 for q, _ in points], [v for _, v in points],
            marker="o", label=f"{int(rate):,} req/s")
ax.set_xscale("log")
ticks = [50, 90, 99, 99.9, 99.99]
ax.set_xticks([1 / (1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
ax.set_ylabel("latency, ms")
ax.set_title("GET /order/{id}, order-service, constant rate (oha)")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.savefig(out, dpi=100, bbox_inches="tight")
print(f"bench: plot written to {out}", file=sys.stderr)
EOF
