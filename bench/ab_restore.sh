#!/usr/bin/env bash
# Cache restore A/B of two builds in one run, alternated (start times move 10-20 % between runs here, more while
# others build): the same N generator documents are loaded once into two databases, each migrated by its own build
# (an old build may keep another schema), then OLD and NEW start in turn, ROUNDS (3) times each: start -> /readyz
# 200, RSS after ready, peak RSS, and RSS per order over the same build started on an empty database.
#
#   OLD=path/to/old/order-service [NEW=target/release/order-service] [ROUNDS=3] bench/ab_restore.sh [N]
#
# Needs release builds of this tree's stan-broker and order-generator (bench/restore.sh builds them). Extra
# environment for both builds (HTTP_WORKERS, CACHE_MAX_BYTES, ...) passes through.
source "$(dirname "$0")/lib.sh"
bench_setup ab-restore

N=${1:-1000000}
ROUNDS=${ROUNDS:-3}
OLD=${OLD:?OLD=path of the old order-service binary}
NEW=${NEW:-$BIN/order-service}

start_deps
DB_NEW=$BENCH_DB DB_OLD="${BENCH_DB}_old"
$PG -c "CREATE DATABASE \"$DB_OLD\"" >/dev/null
# The cleanup drops $BENCH_DB; the old build's database goes with it.
trap 'status=$?; $PG -c "DROP DATABASE IF EXISTS \"$DB_OLD\" WITH (FORCE)" >/dev/null 2>&1 || true; bench_cleanup $status' EXIT

# use VARIANT: points the service at VARIANT's binary and database.
use() {
    case $1 in
        old) SERVICE_BIN=$OLD DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB_OLD" ;;
        new) SERVICE_BIN=$NEW DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB_NEW" ;;
    esac
    export DATABASE_URL
}

# Starts VARIANT, waits for /readyz; sets T_MS, T_RSS (KiB after ready) and T_HWM (peak KiB), then stops it.
time_start() {
    use "$1"
    HTTP_ADDR="127.0.0.1:$BENCH_HTTP_PORT" ADMIN_ADDR="127.0.0.1:$BENCH_ADMIN_PORT" RUST_LOG=${BENCH_RUST_LOG:-warn} \
        "$SERVICE_BIN" >"$BENCH_TMP/service-$1.log" 2>&1 &
    SERVICE_PID=$!
    SERVICE_STARTED_NS=$(now_ns)
    BENCH_PIDS+=("$SERVICE_PID")
    wait_for "order-service ($1)" 300 ready
    T_MS=$((($(now_ns) - SERVICE_STARTED_NS) / 1000000))
    T_RSS=$(rss_kib "$SERVICE_PID")
    T_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")
    stop_service
}

declare -A EMPTY_RSS
for v in old new; do
    use $v
    "$SERVICE_BIN" migrate >"$BENCH_TMP/migrate-$v.log" 2>&1
    time_start $v
    EMPTY_RSS[$v]=$T_RSS
done

log "generating $N documents"
"$BIN/order-generator" --stdout --count "$N" >"$BENCH_TMP/documents.jsonl"
for v in old new; do
    log "loading them for $v"
    use $v
    db=${DATABASE_URL##*/}
    # Each schema's own type for the document (json before migration V6, text after).
    type=$($PG -d "$db" -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                            WHERE attrelid = 'orders'::regclass AND attname = 'document'")
    $PG -d "$db" -c "CREATE UNLOGGED TABLE bench_documents (document json NOT NULL)"
    $PG -d "$db" -c "COPY bench_documents FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')" \
        <"$BENCH_TMP/documents.jsonl"
    $PG -d "$db" -c "
        INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence)
        SELECT document->>'order_uid', document::text::$type, document->>'track_number', document->>'customer_id',
               (document->>'date_created')::timestamptz, row_number() OVER ()
        FROM bench_documents;
        DROP TABLE bench_documents;"
    $PG -d "$db" -c "VACUUM ANALYZE orders"
done
rm -f "$BENCH_TMP/documents.jsonl"
read -r STORED AVG_JSON < <($PG -d "$DB_NEW" -F ' ' -c \
    "SELECT count(*), round(avg(octet_length(document::text))) FROM orders")

ROWS=()
for r in $(seq "$ROUNDS"); do
    for v in old new; do
        log "round $r: $v"
        time_start $v
        ROWS+=("$(awk -v r="$r" -v v="$v" -v n="$STORED" -v ms="$T_MS" -v rss="$T_RSS" -v hwm="$T_HWM" \
            -v base="${EMPTY_RSS[$v]}" -v json="$AVG_JSON" 'BEGIN {
            per = (rss - base) * 1024 / n
            printf "| %d | %s | %.2f s | %.0f MiB | %.0f MiB | %.0f B | %.2fx |", r, v, ms / 1000, rss / 1024,
                hwm / 1024, per, per / json }')")
    done
done

echo "## Cache restore A/B ($STORED orders, average JSON $AVG_JSON B)"
echo
echo "- command: \`OLD=$OLD NEW=$NEW ROUNDS=$ROUNDS bench/ab_restore.sh $N\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
echo "- machine: $(machine); HTTP workers: ${HTTP_WORKERS:-$(nproc)}${CACHE_MAX_BYTES:+; CACHE_MAX_BYTES=$CACHE_MAX_BYTES}"
echo "- RSS on an empty database: old $((EMPTY_RSS[old] / 1024)) MiB, new $((EMPTY_RSS[new] / 1024)) MiB"
echo
echo "| round | build | start to /readyz 200 | RSS after ready | peak RSS | RSS per order | per order / JSON |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
