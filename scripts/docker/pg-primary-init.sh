#!/bin/sh
# Run once by the postgres image on pg-primary's first start (docker-compose.yml, profile "cluster"), after it has
# created the database: lets pg-standby replicate with the service's user and password, and makes every commit wait
# until pg-standby has flushed it. Both take effect at the real start that follows; the database is created before,
# while no standby exists yet to wait for.
set -eu
echo "host replication $POSTGRES_USER all scram-sha-256" >>"$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = 'pg-standby'"
