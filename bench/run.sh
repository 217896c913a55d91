#!/usr/bin/env bash
# One command per benchmark; each prints a results table and writes it to bench/results/<name>.md.
#   bench/run.sh http [ORDERS]      # wrk vs nginx (A B A B), mixed 10 % unknown ids, oha constant rates + plot
#   bench/run.sh ingest [N]         # end to end, live and backlog, RSS, CPU per order of each process
#   bench/run.sh latency            # publish -> first 200 from GET, each order, at 1,000 orders/s
#   bench/run.sh restore [N]        # N orders in PostgreSQL -> /readyz, RSS per cached order
#   bench/run.sh seed [N]           # N orders through the pipeline into a kept database
#   bench/run.sh scale              # two instances on one database: staleness, unknown ids, the cache bound
#   bench/run.sh failover [N]       # kill a JetStream leader, a STAN node, the PostgreSQL primary: gap, redeliveries
#   bench/run.sh criterion          # cargo bench: validation, serialization, cache lookup
#   bench/run.sh pg_work [N] [R]    # PostgreSQL per order: WAL of its own database, sizes, backend CPU, ANALYZE
#   bench/run.sh analyze_growth [N] # CPU of autovacuum's analyses while orders grows, per statistics target
#   bench/run.sh all                # all of the above with their defaults (about 15 minutes)
# Everything listens on and targets 127.0.0.1 only; every run uses its own database, STAN cluster id and ports.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

what=${1:-}
[ -n "$what" ] || usage
shift
case "$what" in
    http | ingest | latency | restore | seed | scale | failover | pg_work | analyze_growth) exec "bench/$what.sh" "$@" ;;
    criterion)
        cargo bench --locked --bench hot_paths -- --warm-up-time 1 --measurement-time 3 "$@" |
            tee /dev/stderr | awk '
                BEGIN { print "## Criterion (cargo bench --bench hot_paths)\n\n| bench | time (low / estimate / high) |\n|---|---|" }
                /^[a-z_]+\/[a-z_0-9]+/ { name = $1 }
                /time:/ { sub(/.*time: +\[/, ""); sub(/\]$/, ""); print "| " name " | " $0 " |" }' \
                >bench/results/criterion.md
        echo "bench: results written to bench/results/criterion.md" >&2
        ;;
    all)
        "$0" criterion
        bench/restore.sh
        bench/ingest.sh
        bench/latency.sh
        bench/http.sh
        bench/scale.sh
        ;;
    *) usage ;;
esac
