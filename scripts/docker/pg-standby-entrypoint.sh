#!/bin/sh
# pg-standby's entrypoint (docker-compose.yml, profile "cluster"). On the first start, with an empty data directory:
# a base backup of pg-primary (-R writes standby.signal and the connection back to it), streaming under the name the
# primary's synchronous_standby_names waits for. Then PostgreSQL as the image runs it (it finds a data directory and
# initializes nothing). Once promoted, the same directory starts as a primary.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    PGPASSWORD=$POSTGRES_PASSWORD gosu postgres pg_basebackup -h pg-primary -U "$POSTGRES_USER" -D "$PGDATA" -R -X stream
    # The later line wins: the same connection, named as the primary waits for.
    echo "primary_conninfo = 'host=pg-primary user=$POSTGRES_USER password=$POSTGRES_PASSWORD application_name=pg-standby'" \
        >>"$PGDATA/postgresql.auto.conf"
fi
exec docker-entrypoint.sh postgres
