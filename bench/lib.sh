# Shared by the bench scripts (sourced, not run). Starts what a benchmark needs on 127.0.0.1 only, each run on its
# own database, STAN cluster id and HTTP port, and stops and removes all of it on exit.
#
#   bench_setup NAME        # cd to the repo, make bench/results, install traps
#   need_apt CMD PKG        # apt-get install PKG unless CMD exists
#   build_release           # order-service, order-generator, stan-broker (release)
#   start_deps              # PostgreSQL + nats-server (scripts/services.sh), a fresh database, a dev STAN broker
#   start_service           # order-service on $BENCH_HTTP_PORT, waits for /readyz
#   seed_orders N           # N orders through the pipeline (generator -> STAN -> service), waits until stored
#   wait_stored N SECONDS   # waits until the orders table holds N rows, polling through one open psql session
#   fresh_database          # drops and re-creates $BENCH_DB
#   delete_stream NAME      # deletes a JetStream stream
#   proc_ticks PID          # CPU clock ticks (user + system) of one process; tree_ticks PID: with its children
#   listener_pid PORT       # the process listening on 127.0.0.1:PORT (nats-server, the PostgreSQL postmaster)
#   bulk_load N             # N generator documents straight into PostgreSQL with COPY (no pipeline)
#   write_results FILE      # stdin -> FILE and stdout

set -euo pipefail

PG="psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qtA"
# BENCH_BIN: other binaries (e.g. a debug build, to check a script quickly with BENCH_NO_BUILD=1).
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}
BENCH_PIDS=()

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

bench_setup() {
    BENCH_NAME=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    mkdir -p bench/results
    BENCH_ID="${BENCH_NAME}_$$_$(date +%s)"
    BENCH_TMP=$(mktemp -d "/tmp/bench-${BENCH_NAME}.XXXXXX")
    LOAD_BEFORE=$(load_now)
    # Ports of our own, so a run never meets another service on a fixed port.
    BENCH_HTTP_PORT=${BENCH_HTTP_PORT:-$(free_port)}
    BENCH_ADMIN_PORT=${BENCH_ADMIN_PORT:-$(free_port)}
    BENCH_NGINX_PORT=${BENCH_NGINX_PORT:-$(free_port)}
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# bench_cleanup [STATUS]: STATUS is the script's exit status, when a trap ran other commands first.
bench_cleanup() {
    local status=${1:-$?}
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${BENCH_DB:-}" ] && [ -z "${BENCH_KEEP_DB:-}" ]; then
        $PG -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ "$status" != 0 ] && [ -d "${BENCH_TMP:-}" ]; then
        log "failed; logs kept in $BENCH_TMP"
        tail -n 20 "$BENCH_TMP"/*.log >&2 2>/dev/null || true
    elif [ -d "${BENCH_TMP:-}" ]; then
        rm -rf "$BENCH_TMP"
    fi
}

need_apt() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "$cmd is missing: install $pkg and re-run"
    log "installing $pkg"
    if [ -z "${BENCH_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        BENCH_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
}

build_release() {
    # BENCH_NO_BUILD=1 reuses the binaries in target/release (several runs in a row).
    [ -z "${BENCH_NO_BUILD:-}" ] || return 0
    log "building release binaries"
    cargo build --release --locked --bin order-service --bin order-generator -p order-service
    cargo build --release --locked --bin stan-broker -p stan-testkit
}

# The machine as the results tables name it.
machine() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    printf '%s cores (%s), %s GiB RAM, %s' "$(nproc)" "$cpu" \
        "$(awk '/MemTotal/ {printf "%d", $2 / 1048576 + 0.5}' /proc/meminfo)" "$(uname -sr)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

load_now() { cut -d' ' -f1-3 /proc/loadavg; }

now_ns() { date +%s%N; }

# Stops a background process and reaps it.
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Kilobytes resident, or 0 once the process is gone.
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_deps() {
    ./scripts/services.sh >/dev/null
    BENCH_DB="bench_${BENCH_ID}"
    $PG -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BENCH_DB"
    export STAN_URL=nats://127.0.0.1:4222
    export STAN_CLUSTER_ID="bench-${BENCH_ID//_/-}"
    export STAN_CHANNEL=orders-bench
    "$BIN/stan-broker" --cluster_id "$STAN_CLUSTER_ID" --nats_server "$STAN_URL" >"$BENCH_TMP/broker.log" 2>&1 &
    BROKER_PID=$!
    BENCH_PIDS+=("$BROKER_PID")
    wait_for "the STAN broker" 10 grep -q "Broker ready" "$BENCH_TMP/broker.log"
}

# wait_for WHAT SECONDS CMD...: polls CMD every 50 ms until it succeeds or the deadline passes.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what not ready within ${seconds} s"
        sleep 0.05
    done
}

# Our service answers /readyz 200; exits the script if it died (the cleanup prints its log).
ready() {
    kill -0 "$SERVICE_PID" 2>/dev/null || die "order-service exited"
    curl -fsS "http://127.0.0.1:$BENCH_HTTP_PORT/readyz" >/dev/null
}

# Starts the service (SERVICE_BIN, else $BIN/order-service) in the background; SERVICE_PID, SERVICE_STARTED_NS.
# Does not wait.
launch_service() {
    HTTP_ADDR="127.0.0.1:$BENCH_HTTP_PORT" ADMIN_ADDR="127.0.0.1:$BENCH_ADMIN_PORT" RUST_LOG=${BENCH_RUST_LOG:-warn} \
        "${SERVICE_BIN:-$BIN/order-service}" >"$BENCH_TMP/service.log" 2>&1 &
    SERVICE_PID=$!
    SERVICE_STARTED_NS=$(now_ns)
    BENCH_PIDS+=("$SERVICE_PID")
}

start_service() {
    launch_service
    wait_for "order-service" "${1:-120}" ready
}

stop_service() { stop_pid "$SERVICE_PID"; }

# The polls of a wait go through one open psql session: a psql per poll costs about 20 ms of CPU and `count(*)` reads
# the whole table, so ten polls a second would take a visible share of the 2 cores from the pipeline being measured.
# poller_open DB, then poll SQL (prints the one-line answer), then poller_close. Dropping the database ends the session.
poller_open() {
    rm -f "$BENCH_TMP/poll.in" "$BENCH_TMP/poll.out"
    mkfifo "$BENCH_TMP/poll.in" "$BENCH_TMP/poll.out"
    $PG -d "$1" <"$BENCH_TMP/poll.in" >"$BENCH_TMP/poll.out" 2>>"$BENCH_TMP/poller.log" &
    POLLER_PID=$!
    BENCH_PIDS+=("$POLLER_PID")
    exec {POLL_IN}>"$BENCH_TMP/poll.in" {POLL_OUT}<"$BENCH_TMP/poll.out"
}

poll() {
    local answer
    echo "$1;" >&"$POLL_IN"
    read -r -t 30 answer <&"$POLL_OUT" || die "no answer from PostgreSQL to: $1 ($(tail -n 1 "$BENCH_TMP/poller.log"))"
    echo "$answer"
}

poller_close() {
    exec {POLL_IN}>&- {POLL_OUT}<&-
    wait "$POLLER_PID" 2>/dev/null || true
}

fresh_database() {
    $PG -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null
    $PG -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
}

# Deletes a JetStream stream through the JetStream API, spoken over a plain socket (no NATS CLI here).
delete_stream() {
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/${NATS_PORT:-4222}
        printf 'CONNECT {\"verbose\":false}\r\nSUB _INBOX.bench 1\r\nPUB \$JS.API.STREAM.DELETE.$1 _INBOX.bench 0\r\n\r\n' >&3
        grep -m 1 -a -q success <&3" || log "could not delete the JetStream stream $1"
}

# CPU time is read from /proc/PID/stat in clock ticks (getconf CLK_TCK a second). The fields are counted after the
# last ')', since the command name may hold spaces: $12 utime, $13 stime, $14 cutime, $15 cstime.
CLK_TCK=$(getconf CLK_TCK)

# Ticks (user + system) PID used so far; 0 once it is gone.
proc_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Ticks of PID, of its living children, and of the children it has reaped (cutime, cstime): for a postmaster, the
# whole PostgreSQL cluster, backends that exited since included.
tree_ticks() {
    # A process may end between the glob and the read: cat then fails, which is no error here.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '{ pid = $1; sub(/^.*\) /, "")
        if (pid == root) total += $12 + $13 + $14 + $15; else if ($2 == root) total += $12 + $13 }
        END { print total + 0 }'
}

listener_pid() {
    ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# The exact count: a full scan, for single checks, not for polling.
orders_stored() { $PG -d "$BENCH_DB" -c "SELECT count(*) FROM orders" 2>/dev/null || echo 0; }

# wait_stored TARGET SECONDS: waits until the orders table holds TARGET rows, polling every 100 ms; sets
# FIRST_STORED_NS when the first row is seen. It polls `max(id)` (one index page), then confirms with count(*): ids are
# dense unless an insert was rolled back, and then max(id) runs ahead, never behind.
wait_stored() {
    local target=$1 deadline=$((SECONDS + $2)) high=0
    FIRST_STORED_NS=
    poller_open "$BENCH_DB"
    # The service creates the table when it starts: wait for it without an error, which would end the session.
    until [ "$(poll "SELECT count(*) FROM pg_class WHERE relname = 'orders' AND relkind = 'r'")" = 1 ]; do
        [ $SECONDS -lt $deadline ] || die "the orders table was not created within $2 s"
        sleep 0.1
    done
    until [ "$high" -ge "$target" ] && [ "$(poll "SELECT count(*) FROM orders")" -ge "$target" ]; do
        [ $SECONDS -lt $deadline ] || die "only $(poll "SELECT count(*) FROM orders") of $target orders stored after $2 s"
        sleep 0.1
        high=$(poll "SELECT coalesce(max(id), 0) FROM orders")
        [ -n "$FIRST_STORED_NS" ] || [ "$high" = 0 ] || FIRST_STORED_NS=$(now_ns)
    done
    FIRST_STORED_NS=${FIRST_STORED_NS:-$(now_ns)}
    poller_close
}

# Publishes N random valid orders through the pipeline and waits until all are stored.
seed_orders() {
    local n=$1 before
    before=$(orders_stored)
    "$BIN/order-generator" --count "$n" >"$BENCH_TMP/generator.log" 2>&1
    wait_stored $((before + n)) 600
}

# N generator documents straight into `orders` with COPY, for a restore benchmark. The database must be migrated.
bulk_load() {
    local n=$1
    $PG -d "$BENCH_DB" -c "CREATE UNLOGGED TABLE bench_documents (document json NOT NULL)"
    # CSV with a quote and delimiter that never occur in the generator's JSON: every line is one value, verbatim.
    "$BIN/order-generator" --stdout --count "$n" |
        $PG -d "$BENCH_DB" -c "COPY bench_documents FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
    $PG -d "$BENCH_DB" -c "
        INSERT INTO orders (order_uid, document, track_number, customer_id, date_created, stan_sequence)
        SELECT document->>'order_uid', document::text, document->>'track_number', document->>'customer_id',
               (document->>'date_created')::timestamptz, row_number() OVER ()
        FROM bench_documents;
        DROP TABLE bench_documents;"
    # The service reads the table right after: set its hint bits and statistics now, as a settled database has them.
    $PG -d "$BENCH_DB" -c "VACUUM ANALYZE orders"
}

# Writes stdin to bench/results/FILE and prints it.
write_results() {
    tee "bench/results/$1"
    log "results written to bench/results/$1"
}
