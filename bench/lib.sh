# bench/lib.sh: what every bench/*/run.sh shares. Sourced after the script has set ROOT and PGBIN
# and defined log and die. Then:
#   bench_init NAME   a temp dir in TMP, removed at exit (unless BENCH_KEEP_TMP=1) after every
#                     process in PIDS (and the load tool in LOAD_PID) and the throwaway PostgreSQL
#                     are stopped; stop_pid PID stops one of them earlier
#   free_port, wait_http URL SECONDS, wait_port PORT
#   start_pg [-c name=value ...]   a PostgreSQL 15 cluster on 127.0.0.1 with role and database
#                     "engram" (pg_trgm and vector when installed); PG_DATA, PG_PORT, PG_PID, and
#                     psql command arrays PSQL_SU (superuser) and PSQL (engram); q SQL runs one
#   pgbench_result OUT   transactions, tps, failed and duration of a pgbench report
#   start_redis       REDIS_PORT
#   PG_CPUS           when set, a taskset CPU list for PostgreSQL and Redis (their processes
#                     inherit it); unset, they run where the scheduler puts them
#   build_engramd     ENGRAMD (given, or build/engramd brought up to date with ninja)
#   pin CPUS          the command prefix that runs on CPUS (a taskset list) into the PIN array;
#                     empty CPUS: no prefix
#   secs DURATION     10s or 2m (wrk's form) in seconds

bench_init() {
  TMP=$(mktemp -d "/tmp/engram-bench-$1.XXXXXX")
  chmod 711 "$TMP"            # the postgres user must traverse it to reach its own subdir
  PIDS=()
  LOAD_PID='' PG_DATA='' PG_PORT='' PG_PID='' REDIS_PORT=''
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

pin() { PIN=(); if [ -n "$1" ]; then PIN=(taskset -c "$1"); fi; }
secs() { local d=$1; case "$d" in *m) echo $(( ${d%m} * 60 )) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac; }

# Stops one process we started (by pid): TERM, then KILL after 5 s.
stop_pid() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The EXIT trap. BENCH_KEEP_TMP=1 keeps the temp dir (logs) for a look afterwards.
bench_cleanup() {
  local pid
  set +e
  [ -n "$LOAD_PID" ] && stop_pid "$LOAD_PID"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 20 stop >/dev/null 2>&1)
  fi
  if [ "${BENCH_KEEP_TMP:-0}" != 1 ]; then rm -rf "$TMP"; else log "kept $TMP"; fi
}

# A free loopback TCP port (bounded tries), below the ephemeral range so that outgoing connections
# of other programs cannot take it between this check and the bind.
EPHEMERAL_LO=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
free_port() {
  local p _ lo=10000 hi=$(( EPHEMERAL_LO > 11000 ? EPHEMERAL_LO : 60000 ))
  for _ in $(seq 1 100); do
    p=$(( lo + RANDOM % (hi - lo) ))
    if [ -z "$(ss -Htan "sport = :$p")" ]; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# Waits (at most $2 s) until $1 answers 2xx.
wait_http() {
  local url=$1 max=$2 _
  for _ in $(seq 1 $(( max * 10 ))); do
    if curl -fsS -m 1 -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Waits (at most 10 s) until something listens on 127.0.0.1:$1.
wait_port() {
  local port=$1 _
  for _ in $(seq 1 100); do
    [ -n "$(ss -Hltn "sport = :$port")" ] && return 0
    sleep 0.1
  done
  return 1
}

start_pg() {
  local dir=$TMP/pg ext
  mkdir "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  PG_DATA=$dir/data
  PG_PORT=$(free_port)
  (cd / && runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 \
      --locale=C.UTF-8 -N) >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
  (cd / && ${PG_CPUS:+taskset -c "$PG_CPUS"} runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$dir $*" start) \
      >/dev/null || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  PG_PID=$(head -n1 "$PG_DATA/postmaster.pid")
  PSQL_SU=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
  "${PSQL_SU[@]}" -d postgres -c 'create role engram login' -c 'create database engram owner engram'
  for ext in pg_trgm vector; do
    if [ -f "/usr/share/postgresql/15/extension/$ext.control" ]; then
      "${PSQL_SU[@]}" -d engram -c "create extension if not exists $ext"
    fi
  done
  PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U engram -d engram)
}
q() { "${PSQL[@]}" -tA -c "$1"; }

# pgbench_result OUT: "transactions tps failed duration_s" from the report pgbench wrote to OUT
# (0 for a line it lacks).
pgbench_result() {
  awk '/number of transactions actually processed/ { split($0, a, ": "); split(a[2], b, "/"); n = b[1] }
    /number of failed transactions/ { split($0, a, ": "); split(a[2], b, " "); f = b[1] }
    /^tps = / { tps = $3 }
    /duration: / { d = $2 }
    END { print n + 0, (tps == "" ? 0 : tps), f + 0, (d == "" ? 0 : d) }' "$1"
}

# ---------------------------------------------------------------- CPU accounting

CLK_TCK=$(getconf CLK_TCK)
CHILD_TICKS=0
# CPU ticks (user+system) used so far by a process and its live direct children.
proc_ticks() {
  local sum=0 p v
  for p in "$1" $(pgrep -P "$1"); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    sum=$(( sum + ${v:-0} ))
  done
  echo "$sum"
}
# Busy CPU ticks of the whole machine (all CPUs): what the measured processes did not use is
# other load.
machine_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# CPU ticks (user+system) of this shell's waited-for children so far (the load tool, once reaped),
# into CHILD_TICKS. `times` must run in this shell, not in a $(...) subshell.
children_ticks() {
  times >"$TMP/times"
  CHILD_TICKS=$(tail -n1 "$TMP/times" | awk -v clk="$CLK_TCK" '{
    n = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] }
    printf "%d\n", n * clk + 0.5 }')
}

start_redis() {
  local _
  mkdir "$TMP/redis"
  REDIS_PORT=$(free_port)
  ${PG_CPUS:+taskset -c "$PG_CPUS"} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" \
    --logfile "$TMP/redis/redis.log" &
  PIDS+=($!)
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "Redis did not start"
}

build_engramd() {
  if [ -n "${ENGRAMD:-}" ]; then
    [ -x "$ENGRAMD" ] || die "ENGRAMD=$ENGRAMD is not executable"
    return
  fi
  ENGRAMD=$ROOT/build/engramd
  if [ ! -f "$ROOT/build/build.ninja" ]; then
    log "no build/: meson setup build --buildtype=release"
    (cd "$ROOT" && meson setup build --buildtype=release >/dev/null)
  fi
  ninja -C "$ROOT/build" >/dev/null || die "build failed (ninja -C build)"
  [ -x "$ENGRAMD" ] || die "$ENGRAMD not built"
}
