# bench/api/lib.sh: what bench/api/run.sh, layers.sh and interleave.sh share, sourced by each:
# where the load and engramd run (LOAD_CPUS, SERVER_CPUS), bench/lib.sh (temp dir, cleanup,
# PostgreSQL, Redis), then engramd, CPU accounting, and the load runners (wrk, pgbench, paced).
# The caller sets HERE, ROOT, PGBIN, CONNS, PROJECT, LOG_LEVEL, POOL_SIZE and BENCH_NAME, and
# defines log/die.
# Extra engramd environment for the next start_engramd: the ENGRAM_EXTRA_ENV array (VAR=value).
# ENGRAM_NAME names its log ($TMP/$ENGRAM_NAME.log), so several can run at once.
ENGRAM_EXTRA_ENV=()

# RELIABILITY.md §2.0: on 2 or more CPUs the load tool on CPU 1 and engramd on CPU 0
# (BENCH_LOAD_CPUS, BENCH_SERVER_CPUS: taskset lists; empty: where the scheduler puts them).
if [ "$(nproc)" -ge 2 ]; then
  LOAD_CPUS=${BENCH_LOAD_CPUS-1}
  SERVER_CPUS=${BENCH_SERVER_CPUS-0}
else
  LOAD_CPUS=${BENCH_LOAD_CPUS-}
  SERVER_CPUS=${BENCH_SERVER_CPUS-}
fi
ENGRAM_NAME=engramd

# ---------------------------------------------------------------- processes, PostgreSQL, Redis

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init "$BENCH_NAME"
ENGRAM_PID=''
# Production-like: PostgreSQL's defaults (fsync, synchronous_commit and full_page_writes on), so
# every acknowledged create is on disk; pgbench runs against the same server in the same run.
PG_SETTINGS="defaults: fsync=on, synchronous_commit=on, full_page_writes=on, shared_buffers=128MB"

# ---------------------------------------------------------------- engramd

start_engramd() {
  ENGRAM_PORT=$(free_port)
  export DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export ENGRAM_LOG_LEVEL=$LOG_LEVEL
  # The recorded scenarios measure CORE's open API; the auth layer's cost is measured separately
  # (bench/api/layers.sh, which sets ENGRAM_AUTH through ENGRAM_EXTRA_ENV).
  export ENGRAM_AUTH=${BENCH_ENGRAM_AUTH:-off}
  [ -n "$POOL_SIZE" ] && export ENGRAM_DB_POOL_SIZE=$POOL_SIZE
  "$ENGRAMD" migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log" >&2; die "engramd migrate failed"; }
  pin "$SERVER_CPUS"
  env "${ENGRAM_EXTRA_ENV[@]}" PORT="$ENGRAM_PORT" ENGRAM_BIND=127.0.0.1 "${PIN[@]}" "$ENGRAMD" serve \
    >"$TMP/$ENGRAM_NAME.log" 2>&1 &
  ENGRAM_PID=$!
  PIDS+=("$ENGRAM_PID")
  if ! wait_http "http://127.0.0.1:$ENGRAM_PORT/health/ready" 15; then
    tail -n 30 "$TMP/$ENGRAM_NAME.log" >&2
    die "engramd did not answer /health/ready within 15 s"
  fi
  BASE=http://127.0.0.1:$ENGRAM_PORT
}

# Stops the engramd of start_engramd (SIGTERM, drain) so the next one can start.
stop_engramd() {
  local p
  stop_pid "$ENGRAM_PID"
  local keep=()
  for p in "${PIDS[@]}"; do [ "$p" != "$ENGRAM_PID" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
  ENGRAM_PID=''
}

check_engramd() {
  if ! kill -0 "$ENGRAM_PID" 2>/dev/null; then
    local rc=0
    wait "$ENGRAM_PID" || rc=$?
    cp "$TMP/$ENGRAM_NAME.log" "/tmp/engram-bench-$BENCH_NAME-$ENGRAM_NAME.log"
    tail -n 30 "$TMP/$ENGRAM_NAME.log" >&2
    die "engramd exited during the run, status $rc (log kept in /tmp/engram-bench-$BENCH_NAME-$ENGRAM_NAME.log)"
  fi
}

# ---------------------------------------------------------------- CPU accounting

# PostgreSQL: the postmaster and its live children (backends, workers), plus the children it has
# reaped (cutime/cstime: backends of pgbench connections that ended during the run).
pg_ticks() {
  echo $(( $(sed 's/.*) //' "/proc/$PG_PID/stat" | awk '{print $14 + $15}') + $(proc_ticks "$PG_PID") ))
}
cpu_begin() {
  C_SRV0=$(proc_ticks "$ENGRAM_PID"); C_PG0=$(pg_ticks); C_ALL0=$(machine_busy_ticks)
  children_ticks; C_LOAD0=$CHILD_TICKS
  C_T0=$(date +%s.%N)
}
# Takes the CPU counters at the end of a run. Must run in this shell (not in $(...)): `times`
# only sees this shell's children (the load tool, once reaped).
cpu_end() {
  C_SRV=$(( $(proc_ticks "$ENGRAM_PID") - C_SRV0 )); C_PG=$(( $(pg_ticks) - C_PG0 ))
  C_ALL=$(( $(machine_busy_ticks) - C_ALL0 )); children_ticks; C_LOAD=$(( CHILD_TICKS - C_LOAD0 ))
  C_WALL=$(awk -v a="$C_T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
}
# Adds the CPU figures of the last cpu_end (% of one CPU over the wall time) to the JSON in $1.
cpu_json() {
  jq -c --argjson clk "$CLK_TCK" --argjson srv "$C_SRV" --argjson pg "$C_PG" --argjson load "$C_LOAD" \
    --argjson all "$C_ALL" --argjson wall "$C_WALL" \
    '. + {wall_s: $wall,
          engramd_cpu_pct: (100 * $srv / $clk / $wall),
          pg_cpu_pct: (100 * $pg / $clk / $wall),
          load_cpu_pct: (100 * $load / $clk / $wall),
          other_cpu_pct: ([0, 100 * ($all - $srv - $pg - $load) / $clk / $wall] | max),
          engramd_cpu_us_per_req: (if .requests > 0 then $srv / $clk * 1e6 / .requests else null end),
          pg_cpu_us_per_req: (if .requests > 0 then $pg / $clk * 1e6 / .requests else null end),
          load_cpu_us_per_req: (if .requests > 0 then $load / $clk * 1e6 / .requests else null end)}' <<<"$1"
}

record() {   # json: append to runs.jsonl and print one line
  printf '%s\n' "$1" >>"$TMP/runs.jsonl"
  jq -r '"  \(.scenario) run \(.round): \(.rps|floor) req/s  p50 \(.p50_us/1000)ms p99 \(.p99_us/1000)ms  errors \(.errors)  engramd CPU \(.engramd_cpu_pct|floor)% pg CPU \(.pg_cpu_pct|floor)% load CPU \(.load_cpu_pct|floor)% other \(.other_cpu_pct|floor)%"' \
    <<<"$1" >&2
}

# ---------------------------------------------------------------- load runners

# load_run NAME OUT CMD...: one run of a load tool on LOAD_CPUS, output to OUT, inside the CPU
# accounting (cpu_begin/cpu_end). In the background + wait (LOAD_PID), so a signal to the script
# is handled at once and the cleanup stops the tool. Dies with the output when the tool fails.
load_run() {
  local name=$1 out=$2; shift 2
  cpu_begin
  pin "$LOAD_CPUS"
  "${PIN[@]}" "$@" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || { cat "$out" >&2; die "$name failed"; }
  LOAD_PID=''
  cpu_end
}
# tool_json TAG OUT: the one-line JSON summary a load tool printed after TAG.
tool_json() {
  local line
  line=$(sed -n "s/^$1 //p" "$2")
  [ -n "$line" ] || { cat "$2" >&2; die "no $1 line in $2"; }
  printf '%s\n' "$line"
}

# run_wrk scenario round duration lua [env...]: wrk -t1 -cCONNS against engramd.
run_wrk() {
  local sc=$1 round=$2 dur=$3 lua=$4 out line; shift 4
  out=$TMP/wrk-$sc-$round.txt
  load_run "wrk ($sc)" "$out" env "$@" timeout $(( $(secs "$dur") + 20 )) \
    wrk -t1 -c"$CONNS" -d"$dur" --timeout 5s --latency -s "$HERE/$lua" "$BASE"
  line=$(tool_json WRKJSON "$out") || exit 1
  line=$(jq -c --arg sc "$sc" --arg r "$round" \
    '. + {scenario: $sc, round: $r, errors: (.err_connect + .err_read + .err_write + .err_status + .err_timeout + (.status_other // 0))}' <<<"$line")
  line=$(cpu_json "$line")
  check_engramd
  [ "$round" = warmup ] && return 0
  if [[ "$sc" == write_* ]]; then
    line=$(jq -c --argjson b "$(q "select count(*) from event_outbox")" '. + {outbox_backlog_after: $b}' <<<"$line")
  fi
  record "$line"
}

# run_pgbench scenario round duration subject-sql mode: pgbench -M mode -cCONNS -j1.
run_pgbench() {
  local sc=$1 round=$2 dur=$3 subj=$4 mode=$5 out line script lat n tps f d
  out=$TMP/pgbench-$sc-$round.txt
  script=$TMP/pgbench-$sc.sql
  sed -e "s#@PROJECT@#$PGB_PROJECT#g" -e "s#@SUBJECT@#$subj#g" -e "s#@WORDS@#$PGB_WORDS#g" \
    "$HERE/pgbench-write.sql.in" >"$script"
  rm -f "$TMP"/pgblog.*
  load_run "pgbench ($sc)" "$out" timeout $(( $(secs "$dur") + 30 )) \
    pgbench -h 127.0.0.1 -p "$PG_PORT" -U engram -n -M "$mode" -c "$CONNS" -j 1 \
      -T "$(secs "$dur")" -f "$script" -l --log-prefix="$TMP/pgblog" engram
  # Per-transaction log: client tx latency_us script epoch_s epoch_us (latency is field 3).
  lat=$(cat "$TMP"/pgblog.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) { print "null null null null"; exit }
    p50 = a[int(NR*0.50) > 0 ? int(NR*0.50) : 1]; p90 = a[int(NR*0.90) > 0 ? int(NR*0.90) : 1];
    p99 = a[int(NR*0.99) > 0 ? int(NR*0.99) : 1]; print p50, p90, p99, a[NR] }')
  read -r n tps f d <<<"$(pgbench_result "$out")"
  line=$(awk -v lat="$lat" -v n="$n" -v tps="$tps" -v f="$f" -v d="$d" 'BEGIN { split(lat, l, " ");
      printf "{\"requests\":%d,\"duration_s\":%s,\"rps\":%s,\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,\"max_us\":%s,\"errors\":%d}\n",
        n, d, tps, l[1], l[2], l[3], l[4], f }')
  line=$(jq -c --arg sc "$sc" --arg r "$round" --arg m "$mode" '. + {scenario: $sc, round: $r, pgbench_mode: $m}' <<<"$line")
  line=$(cpu_json "$line")
  check_engramd
  [ "$round" = warmup ] && return 0
  record "$line"
}

# run_paced scenario round rate duration-s [extra args]: open-loop writes with bench/api/paced
# (built by the caller: make -C bench/api).
run_paced() {
  local sc=$1 round=$2 rate=$3 dur=$4 out line; shift 4
  out=$TMP/paced-$sc-$round.txt
  load_run "paced ($sc)" "$out" timeout $(( dur + 40 )) "$HERE/paced" --url "$BASE" \
    --project "$PROJECT" --rate "$rate" --duration "$dur" --conns "$CONNS" "$@"
  line=$(tool_json PACEDJSON "$out") || exit 1
  line=$(jq -c --arg sc "$sc" --arg r "$round" \
    '. + {scenario: $sc, round: $r, errors: (.status_other + .err_net + (.requests - .completed))}' <<<"$line")
  line=$(cpu_json "$line")
  check_engramd
  [ "$round" = warmup ] && return 0
  record "$line"
}

