#!/usr/bin/env bash
# The statistics work that inserting orders causes later: autovacuum analyzes `orders` each time more than
# 50 + 10 % of its rows changed since the last analysis. This grows the table to N rows in exactly those steps
# (generator documents, the same for every variant) and runs ANALYZE after each, summing the CPU of the analyses
# (/proc/PID/schedstat of the backend). It is the cost per order when autovacuum keeps up with the threshold, which
# it does at moderate rates; at very high rates autovacuum_naptime (one visit a minute) spaces the analyses further.
#
#   bench/analyze_growth.sh [N] [ROUNDS]     # default 240000 rows, 2 rounds
#
# Variants, alternated per round: `migrated` (the statistics targets as the migrations leave them) and `default`
# (every column reset to the server's default target, as before migration V8:
# bench/sql/statistics_default.sql). BENCH_BIN, BENCH_NO_BUILD as elsewhere.
source "$(dirname "$0")/lib.sh"
bench_setup analyze_growth

N=${1:-240000}
ROUNDS=${2:-2}
VARIANTS=${BENCH_VARIANTS:-default migrated}
SEED=${BENCH_SEED:-25}
# Distinct documents loaded once; larger tables repeat them under other order_uids.
DOCUMENTS=$((N < 60000 ? N : 60000))

[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked --bin order-service --bin order-generator -p order-service
./scripts/services.sh >/dev/null
BENCH_DB="bench_${BENCH_ID}"
"$BIN/order-generator" --stdout --count "$DOCUMENTS" --seed "$SEED" >"$BENCH_TMP/documents.jsonl"

# One variant on a fresh database; appends "variant round analyses cpu_ns" to results.txt.
run_variant() {
    local variant=$1 round=$2 n=0 step analyses
    $PG -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null
    $PG -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BENCH_DB" "$BIN/order-service" migrate >"$BENCH_TMP/migrate.log" 2>&1 ||
        die "migrate failed: $(tail -n 3 "$BENCH_TMP/migrate.log")"
    if [ "$variant" = default ]; then
        $PG -d "$BENCH_DB" -f bench/sql/statistics_default.sql >/dev/null
    fi
    $PG -d "$BENCH_DB" >/dev/null <<SQL
CREATE UNLOGGED TABLE bench_documents (document json NOT NULL);
\copy bench_documents FROM '$BENCH_TMP/documents.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
CREATE UNLOGGED TABLE bench_rows AS
    SELECT row_number() OVER () AS n, document->>'order_uid' AS uid, document::text AS document,
           document->>'track_number' AS track_number, document->>'customer_id' AS customer_id,
           (document->>'date_created')::timestamptz AS date_created
    FROM bench_documents;
CREATE INDEX ON bench_rows (n);
SQL
    {
        echo "SELECT pg_backend_pid() AS pid \gset"
        echo "\setenv BENCH_BACKEND :pid"
        while [ "$n" -lt "$N" ]; do
            step=$((50 + n / 10 + 1))
            [ $((n + step)) -le "$N" ] || step=$((N - n))
            echo "INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence)
                SELECT uid || '-' || ((g - 1) / $DOCUMENTS), document, track_number, customer_id, date_created, g
                FROM generate_series($((n + 1)), $((n + step))) g JOIN bench_rows ON bench_rows.n = (g - 1) % $DOCUMENTS + 1;"
            echo "\! cut -d' ' -f1 /proc/\$BENCH_BACKEND/schedstat >>$BENCH_TMP/analyze.before"
            echo "ANALYZE orders;"
            echo "\! cut -d' ' -f1 /proc/\$BENCH_BACKEND/schedstat >>$BENCH_TMP/analyze.after"
            n=$((n + step))
        done
    } | $PG -d "$BENCH_DB" >/dev/null
    local cpu_ns
    analyses=$(wc -l <"$BENCH_TMP/analyze.before")
    cpu_ns=$(paste "$BENCH_TMP/analyze.before" "$BENCH_TMP/analyze.after" | awk '{ s += $2 - $1 } END { printf "%d", s }')
    rm -f "$BENCH_TMP/analyze.before" "$BENCH_TMP/analyze.after"
    echo "$variant $round $analyses $cpu_ns" >>"$BENCH_TMP/results.txt"
    log "$variant round $round: $(tail -n 1 "$BENCH_TMP/results.txt")"
}

for round in $(seq 1 "$ROUNDS"); do
    for variant in $VARIANTS; do
        run_variant "$variant" "$round"
    done
done

{
    echo "## Autovacuum's analyses of a growing orders table"
    echo
    echo "- command: \`bench/analyze_growth.sh $N $ROUNDS\`; binaries: $BIN"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after: $LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); PostgreSQL $($PG -d postgres -c "SHOW server_version")"
    echo "- the table grows to $N rows in the steps at which autovacuum analyzes it (50 + 10 % of its rows), with an" \
        "ANALYZE after each; CPU: the backend's time on a CPU during the analyses (/proc/PID/schedstat)."
    echo
    echo "| statistics targets | round | analyses | CPU of all analyses (ms) | µs per order |"
    echo "|---|---|---|---|---|"
    awk -v n="$N" '{ printf "| %s | %s | %d | %.0f | %.2f |\n", $1, $2, $3, $4 / 1e6, $4 / 1e3 / n }' \
        "$BENCH_TMP/results.txt"
} | write_results analyze_growth.md
