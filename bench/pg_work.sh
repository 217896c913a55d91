#!/usr/bin/env bash
# PostgreSQL's work per order the service commits, in figures that do not move with the machine's load: the WAL the
# run's own database caused (read back with pg_walinspect, so other databases on the server do not count), split by
# resource manager, its full-page images, and the bytes the table and each index hold per order. Beside them, CPU
# per order, which load does move: each backend of the service's connections (the writes, the change feed), from
# /proc/PID/schedstat (nanoseconds on a CPU) over their whole life, and the whole cluster from /proc/PID/stat.
#
# Each round publishes the same N orders (one seed) to the dev STAN broker, then starts the service on a fresh,
# migrated database and times it until all N are stored (the backlog mode of bench/ingest.sh: the batches are full
# whatever the service's speed). Variants are alternated within each round, so a slow moment hits them all alike:
#
#   bench/pg_work.sh [N] [ROUNDS]            # default 50000 orders, 2 rounds, one variant: the schema as migrated
#   BENCH_VARIANTS="main xid=/tmp/xid.sql" bench/pg_work.sh 50000 3
#   BENCH_VARIANTS="b256@BATCH_SIZE=256 b1024@BATCH_SIZE=1024" bench/pg_work.sh
#
# A variant is LABEL, LABEL=SQL_FILE (run on the migrated database before the orders arrive, e.g. another index) or
# LABEL@VAR=VALUE (an environment variable of the service, e.g. BATCH_SIZE). BENCH_BIN, BENCH_NO_BUILD as elsewhere.
source "$(dirname "$0")/lib.sh"
bench_setup pg_work

N=${1:-50000}
ROUNDS=${2:-2}
VARIANTS=${BENCH_VARIANTS:-main}
SEED=${BENCH_SEED:-25}

build_release
need_apt ss iproute2
start_deps
PG_PID=$(listener_pid 5432)
[ -n "$PG_PID" ] || die "PostgreSQL not found listening on 127.0.0.1:5432 (ss -ltnp)"
SYNC_COMMIT=$($PG -d "$BENCH_DB" -c "SHOW synchronous_commit")
$PG -d "$BENCH_DB" -c "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_walinspect'" | grep -q 1 ||
    die "pg_walinspect is not available (PostgreSQL 15 or later, contrib)"

# Nanoseconds PID spent on a CPU (first field of schedstat); 0 once it is gone.
proc_ns() { cut -d' ' -f1 "/proc/$1/schedstat" 2>/dev/null || echo 0; }

# wal_hold_open: a session holding a temporary physical replication slot that reserves WAL from now on;
# wal_hold_close ends it (and the slot).
wal_hold_open() {
    rm -f "$BENCH_TMP/hold.in" "$BENCH_TMP/hold.out"
    mkfifo "$BENCH_TMP/hold.in" "$BENCH_TMP/hold.out"
    $PG -d "$BENCH_DB" <"$BENCH_TMP/hold.in" >"$BENCH_TMP/hold.out" 2>>"$BENCH_TMP/hold.log" &
    HOLD_PID=$!
    BENCH_PIDS+=("$HOLD_PID")
    exec {HOLD_IN}>"$BENCH_TMP/hold.in" {HOLD_OUT}<"$BENCH_TMP/hold.out"
    echo "SELECT 1 FROM pg_create_physical_replication_slot('${BENCH_ID}_hold', true, true);" >&"$HOLD_IN"
    local answer
    read -r -t 30 answer <&"$HOLD_OUT" || die "no replication slot to hold the WAL: $(tail -n 1 "$BENCH_TMP/hold.log")"
}
wal_hold_close() {
    exec {HOLD_IN}>&- {HOLD_OUT}<&-
    wait "$HOLD_PID" 2>/dev/null || true
}

# One run of one variant; appends a line to results.txt.
run_variant() {
    local spec=$1 round=$2 label sql="" env=() t0 t1 cluster_from cluster_ticks lsn0 lsn1
    label=${spec%%[=@]*}
    case $spec in
    *=*) sql=${spec#*=} ;;
    *@*) env=("${spec#*@}") ;;
    esac
    export STAN_CHANNEL="orders-pgwork-$round-$label"
    fresh_database
    env "${env[@]}" "$BIN/order-service" migrate >"$BENCH_TMP/migrate.log" 2>&1 ||
        die "migrate failed: $(tail -n 3 "$BENCH_TMP/migrate.log")"
    $PG -d "$BENCH_DB" -c "CREATE EXTENSION pg_walinspect" >/dev/null
    [ -z "$sql" ] || $PG -d "$BENCH_DB" -f "$sql" >/dev/null
    "$BIN/order-generator" --count "$N" --seed "$SEED" >"$BENCH_TMP/generator.log" 2>&1 ||
        die "order-generator failed: $(tail -n 3 "$BENCH_TMP/generator.log")"
    # A temporary replication slot, held by a session of its own for the run, keeps the run's WAL from being recycled
    # before it is read: other databases' work (a DROP DATABASE requests a checkpoint) can remove segments within
    # seconds. The slot goes with the session, so a run that dies leaves nothing that holds WAL.
    wal_hold_open
    lsn0=$($PG -d "$BENCH_DB" -c "SELECT pg_current_wal_insert_lsn()")
    cluster_from=$(tree_ticks "$PG_PID")
    t0=$(now_ns)
    env "${env[@]}" HTTP_ADDR="127.0.0.1:$BENCH_HTTP_PORT" ADMIN_ADDR="127.0.0.1:$BENCH_ADMIN_PORT" \
        RUST_LOG=${BENCH_RUST_LOG:-warn} "$BIN/order-service" >"$BENCH_TMP/service.log" 2>&1 &
    SERVICE_PID=$!
    BENCH_PIDS+=("$SERVICE_PID")
    wait_stored "$N" 900
    t1=$(now_ns)
    cluster_ticks=$(($(tree_ticks "$PG_PID") - cluster_from))
    # Flushed, not inserted: pg_walinspect reads only up to the flush (every commit of the run is flushed by now).
    lsn1=$($PG -d "$BENCH_DB" -c "SELECT pg_current_wal_flush_lsn()")
    # The service's backends, each over its life (they start with the service): the feed's by its name, the rest
    # are the pool's (writes, and the restore at start).
    local write_ns=0 feed_ns=0 pid app
    while IFS='|' read -r pid app; do
        if [ "$app" = "order-service feed" ]; then
            feed_ns=$((feed_ns + $(proc_ns "$pid")))
        else
            write_ns=$((write_ns + $(proc_ns "$pid")))
        fi
    done < <($PG -d "$BENCH_DB" -c "SELECT pid, application_name FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    # A redelivery (an ack later than the ack wait) makes a batch meet its own stored orders: its COPY is rolled
    # back, after writing rows and WAL, and the batch goes in again. It is counted so such a run can be told apart.
    local redelivered
    redelivered=$(curl -fsS "http://127.0.0.1:$BENCH_ADMIN_PORT/metrics" |
        awk '/^order_service_messages_redelivered_total/ { n += $2 } END { printf "%d", n }')
    stop_service
    # WAL of this database: records touching its relations, and the commit records of its transactions (the xids
    # the orders carry). Other databases' records in the same range are left out.
    local wal
    wal=$($PG -d "$BENCH_DB" -F ' ' -c "
        WITH mine AS (
            SELECT resource_manager, record_length, fpi_length FROM pg_get_wal_records_info('$lsn0', '$lsn1')
            WHERE block_ref LIKE '%/' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/%'
               OR (resource_manager = 'Transaction'
                   AND xid::text::int8 IN (SELECT DISTINCT xid::text::int8 % 4294967296 FROM orders)))
        SELECT count(*), sum(record_length), coalesce(sum(fpi_length), 0), count(*) FILTER (WHERE fpi_length > 0),
               coalesce(sum(record_length) FILTER (WHERE resource_manager IN ('Heap', 'Heap2')), 0),
               coalesce(sum(record_length) FILTER (WHERE resource_manager = 'Btree'), 0),
               coalesce(sum(record_length) FILTER (WHERE resource_manager = 'Transaction'), 0),
               (SELECT count(DISTINCT xid) FROM orders)
        FROM mine")
    wal_hold_close
    local sizes
    sizes=$($PG -d "$BENCH_DB" -F ' ' -c "
        SELECT pg_relation_size('orders'), coalesce(pg_total_relation_size(reltoastrelid), 0),
               (SELECT string_agg(indexrelid::regclass || '=' || pg_relation_size(indexrelid), ',' ORDER BY 1)
                FROM pg_index WHERE indrelid = 'orders'::regclass)
        FROM pg_class WHERE oid = 'orders'::regclass")
    # What the inserts cost later: autovacuum analyzes the table each time a tenth more rows went in. Autovacuum's
    # own runs (every autovacuum_naptime) may or may not fall within a run, so one ANALYZE is timed here, on the
    # table as the run left it.
    local analyze_ns
    $PG -d "$BENCH_DB" <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BENCH_BACKEND :pid
\! cut -d' ' -f1 /proc/\$BENCH_BACKEND/schedstat >$BENCH_TMP/analyze.t0
ANALYZE orders;
\! cut -d' ' -f1 /proc/\$BENCH_BACKEND/schedstat >$BENCH_TMP/analyze.t1
SQL
    analyze_ns=$(($(cat "$BENCH_TMP/analyze.t1") - $(cat "$BENCH_TMP/analyze.t0")))
    echo "$label $round $(((t1 - t0) / 1000000)) $write_ns $feed_ns $cluster_ticks $wal $sizes $analyze_ns $redelivered" \
        >>"$BENCH_TMP/results.txt"
    log "$label round $round: $(tail -n 1 "$BENCH_TMP/results.txt")"
}

for round in $(seq 1 "$ROUNDS"); do
    for spec in $VARIANTS; do
        log "round $round, $spec: $N orders"
        run_variant "$spec" "$round"
    done
done

{
    echo "## PostgreSQL's work per order"
    echo
    echo "- command: \`BENCH_VARIANTS=\"$VARIANTS\" bench/pg_work.sh $N $ROUNDS\`; synchronous_commit = $SYNC_COMMIT;" \
        "binaries: $BIN"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); dev STAN broker, nats-server, PostgreSQL $($PG -d postgres -c "SHOW server_version")" \
        "and the service on the same machine"
    echo "- $N orders (seed $SEED) wait in the broker, then the service starts on a fresh migrated database. WAL: the" \
        "records of this database (pg_walinspect) and its commits; FPI: full-page images among them. Sizes: the" \
        "relations at the end. CPU: the service's backends over their life (schedstat), the cluster over the run" \
        "(/proc/PID/stat: every database on the server, so it carries whatever else ran); these move with load."
    echo
    echo "| variant | round | orders/s | redelivered | commits (mean batch) | WAL B/order (heap / B-tree / commit) | WAL records/order |" \
        "FPIs | heap B/order | TOAST B/order | indexes B/order | write backends µs/order | change feed µs/order |" \
        "cluster µs/order | one ANALYZE of the table at the end, ms CPU |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    # Fields: label round ms write_ns feed_ns cluster_ticks, WAL: records bytes fpi_bytes fpis heap btree commit
    # transactions, sizes: heap toast indexes, analyze_ns, redelivered.
    awk -v n="$N" -v hz="$CLK_TCK" '{
        indexes = ""; k = split($17, idx, ","); for (i = 1; i <= k; i++) { split(idx[i], kv, "=")
            indexes = indexes (i > 1 ? ", " : "") sprintf("%s %.1f", kv[1], kv[2] / n) }
        printf "| %s | %s | %.0f | %d | %d (%.0f) | %.1f (%.1f / %.1f / %.1f) | %.2f | %d | %.1f | %.1f | %s | %.2f | %.2f | %.1f | %.0f |\n",
            $1, $2, n / ($3 / 1000), $19, $14, ($14 > 0 ? n / $14 : 0), $8 / n, $11 / n, $12 / n, $13 / n, $7 / n, $10,
            $15 / n, $16 / n, indexes, $4 / 1000 / n, $5 / 1000 / n, $6 / hz * 1e6 / n,
            $18 / 1e6 }' "$BENCH_TMP/results.txt"
} | write_results pg_work.md
