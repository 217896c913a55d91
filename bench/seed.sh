#!/usr/bin/env bash
# Seeds N orders through the real pipeline (order-generator -> dev STAN broker -> order-service -> PostgreSQL) into a
# database of its own, waits until all are stored, and keeps that database (its name is printed) for later runs:
#   bench/seed.sh [N]           # default 100000
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/<name> target/release/order-service   # serve them
source "$(dirname "$0")/lib.sh"
bench_setup seed

N=${1:-100000}
BENCH_KEEP_DB=1

build_release
start_deps
start_service
t0=$(now_ns)
seed_orders "$N"
ms=$((($(now_ns) - t0) / 1000000))
{
    echo "## Seed through the pipeline"
    echo
    echo "- command: \`bench/seed.sh $N\`; date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(load_now)"
    echo "- machine: $(machine)"
    echo "- database kept: \`$BENCH_DB\` (drop it with \`psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE \"$BENCH_DB\"'\`)"
    echo
    echo "| orders | seconds | orders/s |"
    echo "|---|---|---|"
    awk -v n="$N" -v ms="$ms" 'BEGIN { printf "| %d | %.1f | %.0f |\n", n, ms / 1000, n * 1000 / ms }'
} | write_results seed.md
