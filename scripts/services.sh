#!/usr/bin/env bash
# Makes sure the services order-service needs run on this machine: PostgreSQL on 127.0.0.1:5432, nats-server on
# 127.0.0.1:4222, and the service's own role and database. Installs them with apt-get where missing (fresh
# machines), starts them where stopped, and is a no-op when all is already up.
#
# It never edits pg_hba.conf. The tests connect with TEST_DATABASE_URL:
#   - set by you: used as it is; the local PostgreSQL is not touched;
#   - else, when the local server already lets `postgres` in over 127.0.0.1 without a password: that;
#   - else: a role `order_service_test` (LOGIN CREATEDB, password `order_service_test`), created once through the
#     local socket as the postgres OS user, which the stock password rule for 127.0.0.1 admits. The script says so.
# The chosen URL is the only thing written to stdout, as `TEST_DATABASE_URL=...`, so callers can
# `services_env=$(scripts/services.sh) && eval "$services_env"`; everything else goes to stderr.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
NATS_PORT=4222
TEST_ROLE=order_service_test

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

# `postgres` over TCP without a password: what the machine's pg_hba.conf allows already, if it does.
trusted_tcp() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -qtA -c 'SELECT 1' postgres >/dev/null 2>&1; }

# psql as the database superuser: over TCP where that is trusted, else through the local socket as the postgres OS
# user (Debian's peer rule).
admin_psql() {
    if trusted_tcp; then
        psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -v ON_ERROR_STOP=1 -qtA "$@"
    elif [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA "$@"
    else
        log "cannot reach PostgreSQL as postgres (no trusted TCP login, not root for the local socket);"
        log "set TEST_DATABASE_URL to a role that may create databases, or re-run as root"
        exit 1
    fi
}

# The URL the tests use against the local cluster, creating the password role when nothing else lets them in.
local_test_url() {
    if trusted_tcp; then
        echo "postgres://postgres@$PG_HOST:$PG_PORT/postgres"
        return
    fi
    if [ "$(admin_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$TEST_ROLE'")" != 1 ]; then
        log "no password-less login for postgres on $PG_HOST; creating role $TEST_ROLE (LOGIN CREATEDB, password"
        log "'$TEST_ROLE') for the tests; pg_hba.conf is left as it is"
        admin_psql -c "CREATE ROLE $TEST_ROLE LOGIN CREATEDB PASSWORD '$TEST_ROLE'"
    fi
    local url="postgres://$TEST_ROLE:$TEST_ROLE@$PG_HOST:$PG_PORT/postgres"
    psql "$url" -w -qtA -c 'SELECT 1' >/dev/null 2>&1 || {
        log "role $TEST_ROLE cannot log in over $PG_HOST with its password: pg_hba.conf has no password rule"
        log "for 127.0.0.1; add one yourself (e.g. 'host all $TEST_ROLE 127.0.0.1/32 scram-sha-256') or set"
        log "TEST_DATABASE_URL"
        exit 1
    }
    echo "$url"
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
    if [ "$(admin_psql -c "SELECT 1 FROM pg_roles WHERE rolname = 'order_service'")" != 1 ]; then
        log "creating role order_service"
        admin_psql -c "CREATE ROLE order_service LOGIN PASSWORD 'order_service'"
    fi
    if [ "$(admin_psql -c "SELECT 1 FROM pg_database WHERE datname = 'order_service'")" != 1 ]; then
        log "creating database order_service"
        admin_psql -c "CREATE DATABASE order_service OWNER order_service"
    fi
}

if [ -n "${TEST_DATABASE_URL:-}" ]; then
    command -v psql >/dev/null || apt_install postgresql-client
    psql "$TEST_DATABASE_URL" -w -qtA -c 'SELECT 1' >/dev/null || {
        log "TEST_DATABASE_URL does not answer (see the error above)"
        exit 1
    }
    log "using TEST_DATABASE_URL; the local PostgreSQL is left alone (the service's own database is yours to provide)"
    test_url=$TEST_DATABASE_URL
else
    ensure_postgres >&2
    ensure_database >&2
    test_url=$(local_test_url)
fi
ensure_nats >&2
shown=$(printf '%s' "$test_url" | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')
log "PostgreSQL for the tests at $shown and nats-server on 127.0.0.1:$NATS_PORT are up"
printf 'TEST_DATABASE_URL=%q\n' "$test_url"
