#!/usr/bin/env bash
# Cache restore: N orders in PostgreSQL (generator documents bulk-loaded with COPY, not through the pipeline), then
# the time from starting the service to /readyz 200, and its resident memory per cached order against the average
# JSON size. The per-order figure subtracts the RSS of the same service started on an empty database.
#
#   bench/restore.sh [N]        # default 1000000
source "$(dirname "$0")/lib.sh"
bench_setup restore

N=${1:-1000000}

build_release
start_deps
DATABASE_URL=$DATABASE_URL "$BIN/order-service" migrate >"$BENCH_TMP/migrate.log" 2>&1

# Starts the service, waits for /readyz; sets READY_MS, RSS_KIB (after ready) and HWM_KIB (peak), then stops it.
time_start() {
    launch_service
    wait_for "order-service" 300 ready
    READY_MS=$((($(now_ns) - SERVICE_STARTED_NS) / 1000000))
    RSS_KIB=$(rss_kib "$SERVICE_PID")
    HWM_KIB=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
    stop_service
}

log "start on an empty database (baseline)"
time_start
EMPTY_MS=$READY_MS EMPTY_RSS=$RSS_KIB

log "bulk-loading $N orders"
t0=$(now_ns)
bulk_load "$N"
LOAD_S=$(awk -v ns="$(($(now_ns) - t0))" 'BEGIN { printf "%.1f", ns / 1e9 }')
read -r STORED AVG_JSON < <($PG -d "$BENCH_DB" -F ' ' -c \
    "SELECT count(*), round(avg(octet_length(document::text))) FROM orders")

log "start with $STORED orders"
time_start

{
    echo "## Cache restore from PostgreSQL"
    echo
    echo "- command: \`bench/restore.sh $N\` (documents from \`order-generator --stdout\`, loaded with COPY in ${LOAD_S} s)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); HTTP workers: ${HTTP_WORKERS:-$(nproc)} (one cache actor each, sharing the documents)"
    echo
    echo "| orders | start to /readyz 200 | RSS after ready | peak RSS | RSS per order | average JSON | RSS per order / JSON |"
    echo "|---|---|---|---|---|---|---|"
    awk -v n="$STORED" -v ms="$READY_MS" -v rss="$RSS_KIB" -v hwm="$HWM_KIB" -v base="$EMPTY_RSS" \
        -v base_ms="$EMPTY_MS" -v json="$AVG_JSON" 'BEGIN {
        per = (rss - base) * 1024 / n
        printf "| 0 | %.2f s | %.0f MiB | | | | |\n", base_ms / 1000, base / 1024
        printf "| %d | %.2f s | %.0f MiB | %.0f MiB | %.0f B | %d B | %.2fx |\n",
            n, ms / 1000, rss / 1024, hwm / 1024, per, json, per / json }'
} | write_results restore.md
