#!/usr/bin/env bash
# Makes sure the services order-service needs run on this machine: PostgreSQL on 127.0.0.1:5432 with trust auth
# for local TCP, nats-server on 127.0.0.1:4222, and the service's own role and database. Installs them with apt-get
# where missing (fresh machines), starts them where stopped, and is a no-op when all is already up.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
NATS_PORT=4222

log() { printf 'services: %s\n' "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "need root to install $*; install them and re-run"
        exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 what=$2
    for _ in $(seq 1 100); do
        port_open "$port" && return 0
        sleep 0.1
    done
    log "$what did not start listening on 127.0.0.1:$port"
    exit 1
}

ensure_postgres() {
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        log "installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Tests and the dev setup connect over TCP without a password, like the CI machines do.
    if ! grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        log "allowing trust auth for 127.0.0.1 in $hba"
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
    fi
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        log "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        for _ in $(seq 1 100); do
            pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break
            sleep 0.1
        done
    fi
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || { log "PostgreSQL is not ready on $PG_HOST:$PG_PORT"; exit 1; }
}

ensure_nats() {
    if port_open "$NATS_PORT"; then
        # The JetStream source and its tests need JetStream; the server says so in its INFO greeting.
        local info
        info=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT; head -n 1 <&3" 2>/dev/null || true)
        if [[ "$info" != *'"jetstream":true'* ]]; then
            log "warning: the nats-server on 127.0.0.1:$NATS_PORT runs without JetStream; restart it with -js -sd <dir>"
        fi
        return 0
    fi
    if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
        log "installing nats-server"
        apt_install nats-server
    fi
    log "starting nats-server on 127.0.0.1:$NATS_PORT"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_for_port "$NATS_PORT" nats-server
}

# The service's own role and database (see README, "Database").
ensure_database() {
    local psql=(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'order_service'")" != 1 ]; then
        log "creating role order_service"
        "${psql[@]}" -c "CREATE ROLE order_service LOGIN PASSWORD 'order_service'"
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'order_service'")" != 1 ]; then
        log "creating database order_service"
        "${psql[@]}" -c "CREATE DATABASE order_service OWNER order_service"
    fi
}

ensure_postgres
ensure_nats
ensure_database
log "PostgreSQL on $PG_HOST:$PG_PORT and nats-server on 127.0.0.1:$NATS_PORT are up"
