#!/usr/bin/env bash
# Install (Debian packages) and start a local PostgreSQL for baton's ledger tests, and
# create the role and database they use. Idempotent: uses a server that already runs.
# Prints the URL to export as BATON_TEST_POSTGRES_URL.
set -euo pipefail

DB=${BATON_PG_DB:-baton_test}
ROLE=${BATON_PG_ROLE:-baton}
PASSWORD=${BATON_PG_PASSWORD:-baton}
PORT=${BATON_PG_PORT:-5432}

log() { echo "[postgres] $*" >&2; }
# Only the URL may reach stdout (callers capture it): everything else goes to stderr.
exec 3>&1 1>&2

if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  log "installing postgresql from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main"' | grep -q .; then
  log "creating cluster $version/main"
  pg_createcluster "$version" main --port "$PORT" >/dev/null 3>&-
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
  log "starting cluster $version/main"
  pg_ctlcluster "$version" main start 3>&-  # the server must not hold the caller's pipe
fi
for _ in $(seq 1 30); do
  runuser -u postgres -- pg_isready -q -p "$PORT" && break
  sleep 1
done
runuser -u postgres -- pg_isready -q -p "$PORT" || { log "PostgreSQL did not come up"; \
  tail -20 "/var/log/postgresql/postgresql-$version-main.log" >&2; exit 1; }

psql_su() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtAX "$@"; }
if [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'")" != 1 ]; then
  psql_su -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' CREATEDB"
fi
if [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" != 1 ]; then
  psql_su -c "CREATE DATABASE $DB OWNER $ROLE"
fi
log "ready on port $PORT"
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB" >&3
