#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for tests, listening on 127.0.0.1 only.
#
#   tests/support/pg_cluster.sh start DIR   # initdb + start; prints the SQLAlchemy URL on stdout
#   tests/support/pg_cluster.sh stop DIR    # stop (fast) and delete DIR
#   tests/support/pg_cluster.sh pause DIR   # stop the server, keep its data (an outage)
#   tests/support/pg_cluster.sh resume DIR  # start it again on the same port
#
# The URL is for role "labelloop" (password "labelloop", CREATEDB) on database "postgres", e.g.
#   export LABELLOOP_TEST_POSTGRES_URL="$(tests/support/pg_cluster.sh start /tmp/labelloop-pg)"
# When run as root, the server runs as the "postgres" OS user (postgres refuses to run as root).
# Durability is switched off (fsync, full_page_writes): this cluster is for tests only.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop|pause|resume DIR" >&2
  exit 2
fi

pg_bindir() {
  if [[ -n "${LABELLOOP_PG_BINDIR:-}" ]]; then echo "$LABELLOOP_PG_BINDIR"; return; fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$d" ]]; then
    d="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
  fi
  if [[ ! -x "$d/initdb" || ! -x "$d/pg_ctl" || ! -x "$d/postgres" ]]; then
    echo "pg_cluster.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
    return 1
  fi
  echo "$d"
}

as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
  start)
    bindir="$(pg_bindir)"
    if [[ -e "$dir/data" ]]; then
      echo "pg_cluster.sh: $dir/data already exists" >&2
      exit 1
    fi
    mkdir -p "$dir"
    if [[ "$(id -u)" == 0 ]]; then chown postgres: "$dir"; fi
    chmod 700 "$dir"
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=""
    for _ in 1 2 3 4 5; do
      port="$(free_port)"
      cat >>"$dir/data/postgresql.conf" <<CONF
# --- labelloop test cluster ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
      if as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
        break
      fi
      # Port lost in a race (or another failure): show why, drop our lines and retry.
      tail -n 5 "$dir/server.log" >&2 || true
      sed -i '/^# --- labelloop test cluster ---$/,$d' "$dir/data/postgresql.conf"
      port=""
    done
    if [[ -z "$port" ]]; then
      echo "pg_cluster.sh: PostgreSQL did not start; log: $dir/server.log" >&2
      exit 1
    fi
    as_pg "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres \
      -c "CREATE ROLE labelloop LOGIN CREATEDB PASSWORD 'labelloop'" >&2
    echo "postgresql+psycopg://labelloop:labelloop@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      bindir="$(pg_bindir)"
      as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  pause)
    bindir="$(pg_bindir)"
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
  resume)
    bindir="$(pg_bindir)"
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac
