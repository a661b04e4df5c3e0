#!/usr/bin/env bash
# Local infrastructure for development, tests and CI: a single-node Kafka 3.9 (KRaft) broker run
# from Maven Central jars with the machine's Java 17, a Redis on 127.0.0.1:6379 and a PostgreSQL on
# 127.0.0.1:5432 (the flash-sale store) with the project's database.
#   infra/infra.sh up      start what is not running, wait until it really works (idempotent)
#   infra/infra.sh down [kafka|redis|postgres]   stop what this script started (by its pid files), or one of them
#   infra/infra.sh status  say what runs
# Everything it writes lives under .data/ (git-ignored); the jars under infra/kafka/lib (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${COUPONS_INFRA_DATA:-$ROOT/.data}
KAFKA_DIR=$ROOT/infra/kafka
KAFKA_LIB=$KAFKA_DIR/lib
KAFKA_DATA=$DATA/kafka
KAFKA_LOG=$DATA/kafka.log
KAFKA_PID=$DATA/kafka.pid
KAFKA_PORT=9092
REDIS_PORT=6379
REDIS_PID=$DATA/redis.pid
PG_PORT=5432
# "<version> <postmaster pid>" of a Debian cluster this script started: the only one it stops.
PG_STARTED=$DATA/postgres.started
READY_TIMEOUT=${INFRA_READY_TIMEOUT:-90}

say() { printf 'infra: %s\n' "$*"; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A pid file counts only while its process is still the one we started (after a reboot the pid
# may belong to anything): the command line must name what we expect.
pid_alive() {
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}
who_listens() { command -v ss >/dev/null && ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1; }

# --- Kafka -------------------------------------------------------------------------------------
kafka_jars() {
  if [ -f "$KAFKA_LIB/.complete" ]; then return; fi
  command -v mvn >/dev/null || die "Maven is not installed, and the Kafka jars are not in $KAFKA_LIB yet (apt-get install maven)"
  say "fetching the Kafka broker jars from Maven Central (once)"
  rm -rf "$KAFKA_LIB"
  mvn -q -B -f "$KAFKA_DIR/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIB" -DincludeScope=runtime >"$DATA/mvn.log" 2>&1 \
    || { tail -20 "$DATA/mvn.log" >&2; die "mvn could not fetch the Kafka jars (log: $DATA/mvn.log)"; }
  touch "$KAFKA_LIB/.complete"
}

require_java() {
  command -v java >/dev/null || die "Java is not installed: Kafka needs Java 17 (apt-get install openjdk-17-jre-headless)"
}

kafka_java() {
  java -cp "$KAFKA_LIB/*" -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" "$@"
}

kafka_up() {
  if pid_alive "$KAFKA_PID" kafka.Kafka; then say "kafka already running (pid $(cat "$KAFKA_PID"))"; return; fi
  if port_open "$KAFKA_PORT"; then
    # Like the machine's Redis, a working broker started elsewhere (another checkout) is used as
    # it is, and is not ours to stop; anything else on the port is an error.
    if kafka_probe 15; then FOREIGN_KAFKA=1; say "kafka already answers on 127.0.0.1:$KAFKA_PORT (not started by this checkout)"; return; fi
    die "port $KAFKA_PORT is taken by a process that is not a working Kafka broker ($(who_listens $KAFKA_PORT)); stop it or free the port"
  fi
  require_java
  kafka_jars
  mkdir -p "$KAFKA_DATA"
  local props=$DATA/server.properties
  { cat "$KAFKA_DIR/server.properties"; echo "log.dirs=$KAFKA_DATA"; } >"$props"
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    local cluster_id
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG" | tail -1)
    [ -n "$cluster_id" ] || { tail -20 "$KAFKA_LOG" >&2; die "Java could not run the Kafka storage tool (log: $KAFKA_LOG)"; }
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >>"$KAFKA_LOG" 2>&1 \
      || { tail -20 "$KAFKA_LOG" >&2; die "could not format the Kafka data folder $KAFKA_DATA"; }
  fi
  say "starting kafka on 127.0.0.1:$KAFKA_PORT (data: $KAFKA_DATA, log: $KAFKA_LOG)"
  # A 2 GiB heap is plenty for one broker; the files themselves live in the OS page cache.
  # shellcheck disable=SC2086
  nohup java ${KAFKA_HEAP_OPTS:--Xms1g -Xmx2g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -cp "$KAFKA_LIB/*" \
    kafka.Kafka "$props" >>"$KAFKA_LOG" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
}

kafka_wait() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until port_open "$KAFKA_PORT"; do
    pid_alive "$KAFKA_PID" kafka.Kafka || { tail -30 "$KAFKA_LOG" >&2; die "kafka exited during start-up (log: $KAFKA_LOG)"; }
    [ $SECONDS -lt $deadline ] || { tail -30 "$KAFKA_LOG" >&2; die "kafka did not open port $KAFKA_PORT in ${READY_TIMEOUT}s"; }
    sleep 0.5
  done
  kafka_probe "$READY_TIMEOUT" \
    || { tail -30 "$KAFKA_LOG" >&2; die "kafka answers on $KAFKA_PORT but does not accept a produce and a group join"; }
  say "kafka ready"
}

# An open port is not a working broker: produce a record and join a consumer group.
kafka_probe() {
  [ -d "$ROOT/node_modules/kafkajs" ] || die "npm dependencies are missing: run 'npm install' (or bash scripts/bootstrap.sh) first"
  node --import tsx "$ROOT/infra/kafka-ready.ts" "127.0.0.1:$KAFKA_PORT" "$1"
}

kafka_down() {
  if ! pid_alive "$KAFKA_PID" kafka.Kafka; then rm -f "$KAFKA_PID"; say "kafka not running"; return; fi
  local pid; pid=$(cat "$KAFKA_PID")
  say "stopping kafka (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "kafka did not stop in 30 s, killing it"; kill -9 "$pid"; fi
  rm -f "$KAFKA_PID"
}

# --- Redis -------------------------------------------------------------------------------------
# The binary is needed even when a Redis already answers: some tests start throwaway servers to
# stop and restart them (outage tests).
redis_install() {
  command -v redis-server >/dev/null && return
  [ "$(id -u)" = 0 ] || die "redis-server is not installed (apt-get install redis-server); the outage tests need it even with a running Redis"
  say "installing Debian's redis-server"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >"$DATA/apt.log" 2>&1 \
    || { tail -20 "$DATA/apt.log" >&2; die "apt-get could not install redis-server (log: $DATA/apt.log)"; }
}

redis_up() {
  redis_install
  if redis_ping; then say "redis answers on 127.0.0.1:$REDIS_PORT"; return; fi
  if port_open "$REDIS_PORT"; then die "port $REDIS_PORT is open ($(who_listens $REDIS_PORT)) but does not answer PING like Redis"; fi
  mkdir -p "$DATA/redis"
  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$DATA/redis" --logfile "$DATA/redis.log" --pidfile "$REDIS_PID"
  local deadline=$((SECONDS + 20))
  until redis_ping; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$DATA/redis.log" >&2; die "redis-server did not answer in 20 s"; }
    sleep 0.2
  done
  say "redis ready"
}

# PING over a raw socket, so that no redis-cli is needed.
redis_ping() {
  port_open "$REDIS_PORT" || return 1
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && timeout 2 head -c 7 <&3) 2>/dev/null || return 1
  [[ "$reply" == "+PONG"* ]]
}

redis_down() {
  # Only a Redis this script started is ours to stop; the machine's own keeps running.
  if pid_alive "$REDIS_PID" redis-server; then say "stopping redis (pid $(cat "$REDIS_PID"))"; kill "$(cat "$REDIS_PID")"; fi
  rm -f "$REDIS_PID"
}

# --- PostgreSQL --------------------------------------------------------------------------------
# The one that answers on 127.0.0.1:5432 is used as it is; otherwise Debian's cluster is started
# (and, as root, Debian's postgresql installed first). Then the project's database is created.
postgres_up() {
  if postgres_ping; then
    say "postgresql answers on 127.0.0.1:$PG_PORT"
  else
    if port_open "$PG_PORT"; then die "port $PG_PORT is open ($(who_listens $PG_PORT)) but does not answer like PostgreSQL"; fi
    postgres_install
    local version; version=$(postgres_cluster_version)
    [ -n "$version" ] || die "Debian's postgresql is installed but has no cluster in /etc/postgresql (pg_createcluster <version> main)"
    say "starting Debian's PostgreSQL $version cluster \"main\" on 127.0.0.1:$PG_PORT (log: $DATA/postgres.log)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >"$DATA/postgres.log" 2>&1 \
      || { tail -20 "$DATA/postgres.log" >&2; die "pg_ctlcluster could not start PostgreSQL $version main (log: $DATA/postgres.log)"; }
    local deadline=$((SECONDS + 30))
    until postgres_ping; do
      [ $SECONDS -lt $deadline ] || die "PostgreSQL $version main started but does not answer on 127.0.0.1:$PG_PORT in 30 s (is its port $PG_PORT? see /etc/postgresql/$version/main/postgresql.conf)"
      sleep 0.2
    done
    echo "$version $(postgres_postmaster_pid "$version")" >"$PG_STARTED"
    say "postgresql ready"
  fi
  [ -d "$ROOT/node_modules/pg" ] || die "npm dependencies are missing: run 'npm install' (or bash scripts/bootstrap.sh) first"
  node --import tsx "$ROOT/infra/postgres-ready.ts" "$PG_PORT" 30
}

postgres_install() {
  command -v pg_ctlcluster >/dev/null && [ -n "$(postgres_cluster_version)" ] && return
  [ "$(id -u)" = 0 ] || die "nothing answers on 127.0.0.1:$PG_PORT and Debian's postgresql is not installed (apt-get install postgresql, or run npm run infra:up as root)"
  say "installing Debian's postgresql"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >"$DATA/apt.log" 2>&1 \
    || { tail -20 "$DATA/apt.log" >&2; die "apt-get could not install postgresql (log: $DATA/apt.log)"; }
  local version; version=$(postgres_cluster_version)
  [ -n "$version" ] || die "apt-get installed postgresql but made no cluster in /etc/postgresql"
  # A cluster made just now for this machine: let the project's user in from 127.0.0.1 without a
  # password, as DATABASE_URL's default expects (Debian's default asks for one).
  local hba=/etc/postgresql/$version/main/pg_hba.conf
  { echo "# added by infra/infra.sh: development cluster"; echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
  chown postgres:postgres "$hba"
}

postgres_cluster_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true; }
postgres_postmaster_pid() { head -1 "/var/lib/postgresql/$1/main/postmaster.pid" 2>/dev/null || true; }

# SSLRequest over a raw socket: a PostgreSQL server answers one byte, S or N, whatever its
# authentication rules; no psql needed.
postgres_ping() {
  port_open "$PG_PORT" || return 1
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT" && printf '\x00\x00\x00\x08\x04\xd2\x16\x2f' >&3 && timeout 2 head -c 1 <&3) 2>/dev/null || return 1
  [[ "$reply" == "S" || "$reply" == "N" ]]
}

# Only a cluster this script started (and that still runs as it started it) is ours to stop.
postgres_ours() {
  [ -f "$PG_STARTED" ] || return 1
  local version pid; read -r version pid <"$PG_STARTED"
  [ -n "$pid" ] && [ "$(postgres_postmaster_pid "$version")" = "$pid" ] && kill -0 "$pid" 2>/dev/null
}

postgres_down() {
  if postgres_ours; then
    local version; version=$(cut -d' ' -f1 "$PG_STARTED")
    say "stopping PostgreSQL $version main (started by this script)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main stop || die "pg_ctlcluster could not stop PostgreSQL $version main"
  fi
  rm -f "$PG_STARTED"
}

# -----------------------------------------------------------------------------------------------
mkdir -p "$DATA"
case "${1:-}" in
  up)
    redis_up
    postgres_up
    FOREIGN_KAFKA=0
    kafka_up
    [ "$FOREIGN_KAFKA" = 1 ] || kafka_wait ;;
  down)
    case "${2:-all}" in
      kafka) kafka_down ;;
      redis) redis_down ;;
      postgres) postgres_down ;;
      all) kafka_down; redis_down; postgres_down ;;
      *) die "usage: infra/infra.sh down [kafka|redis|postgres]" ;;
    esac ;;
  status)
    if pid_alive "$KAFKA_PID" kafka.Kafka; then say "kafka running (pid $(cat "$KAFKA_PID")) on 127.0.0.1:$KAFKA_PORT"
    elif port_open "$KAFKA_PORT"; then say "kafka not started by this checkout, but port $KAFKA_PORT is open ($(who_listens $KAFKA_PORT))"
    else say "kafka not running"; fi
    if redis_ping; then say "redis answers on 127.0.0.1:$REDIS_PORT$(pid_alive "$REDIS_PID" redis-server && echo " (started by us, pid $(cat "$REDIS_PID"))")"; else say "redis not answering"; fi
    if postgres_ping; then say "postgresql answers on 127.0.0.1:$PG_PORT$(postgres_ours && echo " (started by us: Debian cluster $(cut -d' ' -f1 "$PG_STARTED") main)")"; else say "postgresql not answering"; fi ;;
  *) die "usage: infra/infra.sh up|down [kafka|redis|postgres]|status" ;;
esac
