#!/usr/bin/env bash
# Failover: for each case of BENCH_CASES (default "jetstream stan postgres"), N orders wait in the broker, the
# service starts and works through them, and once a third is stored one node is killed:
#   jetstream  three nats-server nodes (one cluster, JetStream), the stream at JS_REPLICAS=3; SIGKILL of the node that
#              leads the stream (read from its /jsz);
#   stan       three nats-server nodes (one cluster); the dev STAN broker on node 1, the service given nodes 2 and 3;
#              SIGKILL of the node holding the service's subscriptions (read from /connz);
#   postgres   a primary and a synchronous standby made here (initdb, pg_basebackup -R), the service given both with
#              target_session_attrs=read-write; the primary stopped with `pg_ctl stop -m immediate`, the standby
#              promoted at once (as a failover manager would).
# Each case reports, from the orders table (ingested_at: the start of the transaction that committed the row, by the
# database's clock, which is this machine's):
#   gap            from the kill to the first commit after it (for a broker, a batch delivered before the kill
#                  may still commit right after it, so see also the pause);
#   longest pause  the longest time without a commit from the kill until all N are stored;
# and the redeliveries the service counted after the kill (order_service_messages_redelivered_total), and that all N
# are stored once.
#
#   bench/failover.sh [N]                    # default 30000
#   BENCH_CASES=postgres bench/failover.sh
# The jetstream and stan cases need STAN_URL and NATS_URL to take a server list and JS_REPLICAS (issue 24).
source "$(dirname "$0")/lib.sh"
bench_setup failover

N=${1:-30000}
CASES=${BENCH_CASES:-jetstream stan postgres}
DEADLINE=${BENCH_DEADLINE:-300}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
[ -x "$PG_BIN/initdb" ] || die "no initdb under $PG_BIN: install PostgreSQL or set PG_BIN"

build_release
./scripts/services.sh >/dev/null
# The PostgreSQL processes of the postgres case run as the postgres user; it must reach their directories.
chmod 711 "$BENCH_TMP"
PAIR_DIRS=()
NATS_PIDS=()

failover_cleanup() {
    local dir
    for dir in "${PAIR_DIRS[@]}"; do
        as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
    done
}
trap 'status=$?; failover_cleanup; bench_cleanup "$status"' EXIT

# Runs a PostgreSQL tool as the postgres user when we are root (initdb and postgres refuse root).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_nats_cluster [-js]: three nats-server nodes in one cluster; NODE_PORT[i], MONITOR_PORT[i], NATS_PIDS[i].
start_nats_cluster() {
    local i j routes store=()
    declare -ga NODE_PORT=() ROUTE_PORT=() MONITOR_PORT=()
    for i in 1 2 3; do
        NODE_PORT[i]=$(free_port) ROUTE_PORT[i]=$(free_port) MONITOR_PORT[i]=$(free_port)
    done
    for i in 1 2 3; do
        routes=
        for j in 1 2 3; do
            [ "$j" = "$i" ] || routes="${routes:+$routes,}nats://127.0.0.1:${ROUTE_PORT[j]}"
        done
        [ "${1:-}" != -js ] || store=(-js -sd "$BENCH_TMP/js$i")
        nats-server -a 127.0.0.1 -p "${NODE_PORT[i]}" -m "${MONITOR_PORT[i]}" -n "node$i" \
            --cluster "nats://127.0.0.1:${ROUTE_PORT[i]}" --cluster_name "bench-$$" --routes "$routes" \
            "${store[@]}" >"$BENCH_TMP/nats$i.log" 2>&1 &
        NATS_PIDS[i]=$!
        BENCH_PIDS+=("$!")
    done
    for i in 1 2 3; do
        wait_for "nats-server node $i" 30 curl -fsS "http://127.0.0.1:${MONITOR_PORT[i]}/healthz"
    done
    if [ "${1:-}" = -js ]; then
        wait_for "a JetStream meta leader" 30 json_field "${MONITOR_PORT[1]}" /jsz \
            'd["meta_cluster"]["leader"]'
    fi
}

stop_nats_cluster() {
    local pid
    for pid in "${NATS_PIDS[@]}"; do stop_pid "$pid"; done
    NATS_PIDS=()
}

# json_field MONITOR_PORT PATH EXPR: prints EXPR over the monitoring endpoint's JSON `d`; fails when it is empty.
json_field() {
    curl -fsS "http://127.0.0.1:$1$2" | python3 -c "import json, sys
d = json.load(sys.stdin)
value = $3
if not value:
    sys.exit(1)
print(value)"
}

# The node (1-3) that leads stream $1, as node 1 reports it.
stream_leader() {
    local name
    name=$(json_field "${MONITOR_PORT[1]}" '/jsz?accounts=true&streams=true' \
        "next((s['cluster'].get('leader') for a in d.get('account_details', []) for s in a.get('stream_detail', [])
               if s['name'] == '$1'), None)")
    echo "${name#node}"
}

# The node among 2 and 3 whose client connections hold the most subscriptions (the service's STAN connection).
stan_node() {
    local i best=0 most=-1 subs
    for i in 2 3; do
        subs=$(curl -fsS "http://127.0.0.1:${MONITOR_PORT[i]}/connz" |
            python3 -c 'import json, sys; print(sum(c.get("subscriptions", 0) for c in json.load(sys.stdin)["connections"]))')
        log "node $i: $subs subscriptions of client connections"
        if [ "$subs" -gt "$most" ]; then best=$i most=$subs; fi
    done
    [ "$most" -gt 0 ] || die "no client subscriptions on node 2 or 3: the service is not connected"
    echo "$best"
}

# start_pair: a primary whose commits wait for its synchronous standby (named "standby"), made from it with
# pg_basebackup -R; PRIMARY_PORT, STANDBY_PORT, PRIMARY_DIR, STANDBY_DIR, and the service's database `failover`.
start_pair() {
    PRIMARY_PORT=$(free_port) STANDBY_PORT=$(free_port)
    # A directory of the postgres user's own holds both data directories and their logs.
    PAIR_ROOT="$BENCH_TMP/pg"
    install -d -m 700 -o postgres -g postgres "$PAIR_ROOT"
    PRIMARY_DIR="$PAIR_ROOT/primary" STANDBY_DIR="$PAIR_ROOT/standby"
    PAIR_DIRS=("$PRIMARY_DIR" "$STANDBY_DIR")
    as_postgres "$PG_BIN/initdb" -D "$PRIMARY_DIR" -A trust -U postgres --no-sync >"$BENCH_TMP/initdb.log"
    as_postgres "$PG_BIN/pg_ctl" -D "$PRIMARY_DIR" -l "$PAIR_ROOT/primary.log" -w -t 30 start \
        -o "-p $PRIMARY_PORT -k $PAIR_ROOT -c listen_addresses=127.0.0.1 -c synchronous_standby_names=standby" \
        >/dev/null
    as_postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$STANDBY_DIR" -R --no-sync
    # The later line wins: the same connection, under the name the primary waits for.
    echo "primary_conninfo = 'host=127.0.0.1 port=$PRIMARY_PORT user=postgres application_name=standby'" \
        >>"$STANDBY_DIR/postgresql.auto.conf"
    as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" -l "$PAIR_ROOT/standby.log" -w -t 30 start \
        -o "-p $STANDBY_PORT -k $PAIR_ROOT -c listen_addresses=127.0.0.1" >/dev/null
    PG="psql -h 127.0.0.1 -p $PRIMARY_PORT -U postgres -v ON_ERROR_STOP=1 -qtA"
    wait_for "the standby to stream synchronously" 30 \
        bash -c "[ \"\$($PG -c \"SELECT sync_state FROM pg_stat_replication\")\" = sync ]"
    $PG -c "CREATE DATABASE failover" >/dev/null
    BENCH_DB=failover
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PRIMARY_PORT,127.0.0.1:$STANDBY_PORT/failover?target_session_attrs=read-write"
}

stop_pair() {
    failover_cleanup
    PAIR_DIRS=()
    PG="psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qtA"
    BENCH_DB=
}

# A database on the machine's PostgreSQL for a broker case (dropped at exit by bench_cleanup, or by the next case).
machine_database() {
    BENCH_DB="bench_${BENCH_ID}"
    fresh_database
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BENCH_DB"
}

# start_broker NATS_URL: the dev STAN broker on a cluster id of the run's own.
start_broker() {
    export STAN_CLUSTER_ID="bench-failover-$$-$CASE" STAN_CHANNEL=orders-failover
    "$BIN/stan-broker" --cluster_id "$STAN_CLUSTER_ID" --nats_server "$1" >"$BENCH_TMP/broker-$CASE.log" 2>&1 &
    BROKER_PID=$!
    BENCH_PIDS+=("$BROKER_PID")
    wait_for "the STAN broker" 10 grep -q "Broker ready" "$BENCH_TMP/broker-$CASE.log"
}

# publish TARGET_ARGS...: N orders into the broker, each confirmed.
publish() {
    "$BIN/order-generator" "$@" --count "$N" --seed 24 >"$BENCH_TMP/generator-$CASE.log" 2>&1 ||
        die "order-generator failed: $(tail -n 3 "$BENCH_TMP/generator-$CASE.log")"
}

# The service's redeliveries so far (every source, every instance on the admin port).
redeliveries() {
    curl -fsS "http://127.0.0.1:$BENCH_ADMIN_PORT/metrics" |
        awk '/^order_service_messages_redelivered_total/ { n += $2 } END { printf "%d", n }'
}

# Waits until a third of N is stored: the moment to kill a node. REDELIVERED_BEFORE: the redeliveries until then (a
# backlog has some from the start: see bench/README.md).
wait_a_third() {
    wait_stored $((N / 3)) "$DEADLINE"
    REDELIVERED_BEFORE=$(redeliveries)
}

# Reads the gap, the longest pause and the count from the table, the redeliveries from the service; one result line.
report_case() {
    local what=$1 redelivered figures
    wait_stored "$N" "$DEADLINE"
    redelivered=$(($(redeliveries) - REDELIVERED_BEFORE))
    figures=$($PG -d "$BENCH_DB" -F ' ' -c "
        WITH kill AS (SELECT to_timestamp($KILL_NS / 1e9) AS at),
             commits AS (SELECT DISTINCT ingested_at AS at FROM orders, kill WHERE orders.ingested_at > kill.at
                         UNION ALL SELECT at FROM kill),
             pauses AS (SELECT lead(at) OVER (ORDER BY at) - at AS pause FROM commits)
        SELECT round(extract(epoch FROM (SELECT min(at) FROM commits WHERE at > (SELECT at FROM kill))
                                        - (SELECT at FROM kill))::numeric, 2),
               round(extract(epoch FROM (SELECT max(pause) FROM pauses))::numeric, 2),
               (SELECT count(*) FROM orders), (SELECT count(DISTINCT order_uid) FROM orders)")
    echo "$CASE|$what|$figures|$redelivered" >>"$BENCH_TMP/results.txt"
    log "$CASE: $what; gap, longest pause, stored, distinct: $figures; redelivered: $redelivered"
}

case_jetstream() {
    start_nats_cluster -js
    machine_database
    export SOURCE=jetstream JS_REPLICAS=3 JS_STREAM="ORDERS_FAILOVER_$$" JS_SUBJECT="orders.failover.$$"
    export NATS_URL="nats://127.0.0.1:${NODE_PORT[1]},nats://127.0.0.1:${NODE_PORT[2]},nats://127.0.0.1:${NODE_PORT[3]}"
    # The service creates the stream (R3) and its consumer; then the backlog is published.
    start_service
    stop_service
    publish --target jetstream --url "nats://127.0.0.1:${NODE_PORT[1]}" --subject "$JS_SUBJECT"
    launch_service
    local leader
    wait_a_third
    leader=$(stream_leader "$JS_STREAM")
    KILL_NS=$(now_ns)
    kill -9 "${NATS_PIDS[leader]}"
    report_case "SIGKILL of node $leader, the leader of the R3 stream"
    stop_service
    stop_nats_cluster
    unset SOURCE JS_REPLICAS JS_STREAM JS_SUBJECT NATS_URL
}

case_stan() {
    start_nats_cluster
    machine_database
    start_broker "nats://127.0.0.1:${NODE_PORT[1]}"
    export SOURCE=stan STAN_URL="nats://127.0.0.1:${NODE_PORT[2]},nats://127.0.0.1:${NODE_PORT[3]}"
    publish --target stan --url "nats://127.0.0.1:${NODE_PORT[1]}"
    launch_service
    local node
    wait_a_third
    node=$(stan_node)
    KILL_NS=$(now_ns)
    kill -9 "${NATS_PIDS[node]}"
    report_case "SIGKILL of node $node, the one the service's STAN connection is on"
    stop_service
    stop_pid "$BROKER_PID"
    stop_nats_cluster
    unset SOURCE STAN_URL
}

case_postgres() {
    start_pair
    start_broker nats://127.0.0.1:4222
    export SOURCE=stan STAN_URL=nats://127.0.0.1:4222
    publish --target stan --url "$STAN_URL"
    launch_service
    wait_a_third
    KILL_NS=$(now_ns)
    as_postgres "$PG_BIN/pg_ctl" -D "$PRIMARY_DIR" -m immediate stop >/dev/null
    as_postgres "$PG_BIN/pg_ctl" -D "$STANDBY_DIR" -w -t 30 promote >/dev/null
    PG="psql -h 127.0.0.1 -p $STANDBY_PORT -U postgres -v ON_ERROR_STOP=1 -qtA"
    report_case "pg_ctl stop -m immediate of the primary, its synchronous standby promoted"
    stop_service
    stop_pid "$BROKER_PID"
    stop_pair
    unset SOURCE STAN_URL
}

for CASE in $CASES; do
    log "failover: $CASE, $N orders"
    "case_$CASE"
done

{
    echo "## Failover: from killing a node to the next commit"
    echo
    echo "- command: \`bench/failover.sh $N\`; date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before/after:" \
        "$LOAD_BEFORE / $(load_now)"
    echo "- machine: $(machine); every node, the broker and the service on the same machine; binaries: \`$BIN\`"
    echo "- $N orders wait in the broker; the service works through them and the node is killed once a third is" \
        "stored. gap: from the kill to the first commit after it; longest pause: the longest time without a commit" \
        "from the kill until all are stored (both from orders.ingested_at, the start of each committing" \
        "transaction); redelivered: how much the service's order_service_messages_redelivered_total grew from the" \
        "kill until all were stored."
    echo
    echo "| case | node killed | gap (s) | longest pause (s) | stored / distinct | redelivered |"
    echo "|---|---|---|---|---|---|"
    awk -F'|' '{ split($3, f, " "); printf "| %s | %s | %s | %s | %s / %s | %s |\n", $1, $2, f[1], f[2], f[3], f[4], $4 }' \
        "$BENCH_TMP/results.txt"
} | write_results failover.md
