#!/usr/bin/env bash
# bench/health/run.sh — issue #2: GET /health/live throughput and latency, engramd vs nginx.
#
# One self-contained run (about 2 minutes): a throwaway PostgreSQL 15 cluster and Redis in a temp dir
# (engramd needs them to start), engramd and two nginx baselines (`return 200 '{"status":"pass"}'`,
# 1 worker to match engramd's single loop, and 2 workers for information), all on 127.0.0.1.
# wrk runs the same settings against each, pinned to its own CPU, RUNS rounds alternating servers.
# Results: appended to bench/results/health.md, latest run in bench/results/health.json.
# Every process started here is stopped at exit (trap); the temp dir is removed.
#
# Environment (all optional):
#   BENCH_DURATION=10s BENCH_WARMUP=2s BENCH_CONNECTIONS=64 BENCH_THREADS=1 BENCH_RUNS=3
#   BENCH_TARGETS="engramd nginx1 nginx2"   subset to run (e.g. "nginx1 nginx2" without engramd)
#   BENCH_WRK_CPUS=1 BENCH_SERVER_CPUS=0    taskset CPU lists (defaults need nproc >= 2; else unpinned)
#   BENCH_NGINX2_CPUS=<all CPUs>            CPUs for the 2-worker nginx (shares with wrk on 2 CPUs)
#   BENCH_ENGRAM_LOG_LEVEL=warn             engramd log level (nginx runs with access_log off)
#   BENCH_RESULTS_DIR=bench/results         where health.md / health.json go
#   BENCH_GATE=1                            exit 3 if engramd/nginx-1w < 0.90
#   ENGRAMD=build/engramd                   binary to test (default: build/, brought up to date with ninja)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
RUNS=${BENCH_RUNS:-3}
TARGETS=${BENCH_TARGETS:-engramd nginx1 nginx2}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
LOG_LEVEL=${BENCH_ENGRAM_LOG_LEVEL:-warn}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  # RELIABILITY.md §2.0: load on CPU1, server on CPU0.
  WRK_CPUS=${BENCH_WRK_CPUS-1}
  SERVER_CPUS=${BENCH_SERVER_CPUS-0}
else
  WRK_CPUS=${BENCH_WRK_CPUS-}
  SERVER_CPUS=${BENCH_SERVER_CPUS-}
fi
NGINX2_CPUS=${BENCH_NGINX2_CPUS-0-$((NCPU - 1))}

log() { printf 'bench/health: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
has_target() { case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# PIN=(taskset -c CPUS) or (): used as a command prefix, so `"${PIN[@]}" server &` leaves $! = the server's pid.

for t in $TARGETS; do
  case "$t" in engramd|nginx1|nginx2) ;; *) die "unknown target '$t' (engramd nginx1 nginx2)" ;; esac
done
for c in wrk nginx taskset curl jq ss pgrep getconf; do command -v "$c" >/dev/null || die "$c not found (run ops/setup)"; done

# ---------------------------------------------------------------- processes, PostgreSQL, Redis

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init health
ENGRAM_PID=''
declare -A URL RESP_BYTES SRV_PID   # target -> URL of /health/live, "header+body" bytes, server pid

# ---------------------------------------------------------------- engramd

start_engramd() {
  build_engramd
  start_pg -c fsync=off   # the health probe never touches the database
  start_redis
  ENGRAM_PORT=$(free_port)
  export DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export ENGRAM_LOG_LEVEL=$LOG_LEVEL
  "$ENGRAMD" migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log" >&2; die "engramd migrate failed"; }
  pin "$SERVER_CPUS"
  PORT=$ENGRAM_PORT ENGRAM_BIND=127.0.0.1 "${PIN[@]}" "$ENGRAMD" serve >"$TMP/engramd.log" 2>&1 &
  ENGRAM_PID=$!
  PIDS+=("$ENGRAM_PID")
  if ! wait_http "http://127.0.0.1:$ENGRAM_PORT/health/live" 15; then
    tail -n 30 "$TMP/engramd.log" >&2
    die "engramd did not answer /health/live within 15 s"
  fi
  URL[engramd]=http://127.0.0.1:$ENGRAM_PORT/health/live
  SRV_PID[engramd]=$ENGRAM_PID
}

# ---------------------------------------------------------------- nginx

start_nginx() {   # name workers cpus
  local name=$1 workers=$2 cpus=$3 dir=$TMP/$1 port
  port=$(free_port)
  mkdir "$dir"
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" "$HERE/nginx.conf.in" >"$dir/nginx.conf"
  pin "$cpus"
  "${PIN[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  PIDS+=($!)
  SRV_PID[$name]=$!
  if ! wait_http "http://127.0.0.1:$port/health/live" 10; then
    cat "$dir/error.log" >&2 || true
    die "nginx ($name) did not start"
  fi
  URL[$name]=http://127.0.0.1:$port/health/live
}

# ---------------------------------------------------------------- load

run_wrk() {   # target round duration
  local t=$1 round=$2 dur=$3 out line srv0 srv1 all0 all1 wrk0 wrk1
  out=$TMP/wrk-$t-$round.txt
  srv0=$(proc_ticks "${SRV_PID[$t]}")
  all0=$(machine_busy_ticks)
  children_ticks; wrk0=$CHILD_TICKS
  pin "$WRK_CPUS"
  # In the background + wait, so a signal to this script is handled at once (cleanup stops wrk).
  "${PIN[@]}" timeout $(( $(secs "$dur") + 20 )) \
    wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency -s "$HERE/report.lua" "${URL[$t]}" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || { cat "$out" >&2; die "wrk failed against $t"; }
  LOAD_PID=''
  srv1=$(proc_ticks "${SRV_PID[$t]}")
  all1=$(machine_busy_ticks)
  children_ticks; wrk1=$CHILD_TICKS
  [ "$round" = warmup ] && return 0
  line=$(sed -n 's/^WRKJSON //p' "$out")
  [ -n "$line" ] || { cat "$out" >&2; die "no WRKJSON line from wrk"; }
  # Server CPU per request does not depend on whether wrk or the server is the bottleneck.
  # CPU figures are in % of one CPU; other_cpu_pct is what the rest of the machine used meanwhile
  # (a busy box makes the run noise: see the report).
  line=$(jq -c --arg t "$t" --argjson r "$round" --argjson clk "$CLK_TCK" \
    --argjson srv $(( srv1 - srv0 )) --argjson wrk $(( wrk1 - wrk0 )) --argjson all $(( all1 - all0 )) \
    '. + {target: $t, round: $r, server_cpu_s: ($srv / $clk)}
     | . + {server_cpu_pct: (100 * .server_cpu_s / .duration_s),
            server_cpu_us_per_req: (if .requests > 0 then .server_cpu_s * 1e6 / .requests else null end),
            wrk_cpu_pct: (100 * $wrk / $clk / .duration_s),
            other_cpu_pct: ([0, 100 * ($all - $srv - $wrk) / $clk / .duration_s] | max)}' <<<"$line")
  printf '%s\n' "$line" >>"$TMP/runs.jsonl"
  jq -r '"  \(.target) run \(.round): \(.rps|floor) req/s  p50 \(.p50_us)us p90 \(.p90_us)us p99 \(.p99_us)us  errors \(.err_connect+.err_read+.err_write+.err_status+.err_timeout)  server CPU \(.server_cpu_pct|floor)% (\(.server_cpu_us_per_req*10|floor/10) us/req)  wrk CPU \(.wrk_cpu_pct|floor)%  other load \(.other_cpu_pct|floor)%"' \
    <<<"$line" >&2
}

START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)   # other work on the box skews results: recorded in the report
log "targets: $TARGETS; wrk -t$THREADS -c$CONNS -d$DURATION x $RUNS, wrk CPU '${WRK_CPUS:-any}', server CPU '${SERVER_CPUS:-any}'"

if has_target engramd; then start_engramd; fi
if has_target nginx1; then start_nginx nginx1 1 "$SERVER_CPUS"; fi
if has_target nginx2; then start_nginx nginx2 2 "$NGINX2_CPUS"; fi

# Every server must return 200 with the same body before we measure it.
for t in $TARGETS; do
  body=$(curl -fsS -m 2 "${URL[$t]}") || die "$t: GET ${URL[$t]} failed"
  [ "$body" = '{"status":"pass"}' ] || die "$t: unexpected body: $body"
  RESP_BYTES[$t]=$(curl -sS -m 2 -o /dev/null -w '%{size_header}+%{size_download}' "${URL[$t]}")
done

log "warm-up ($WARMUP each)"
for t in $TARGETS; do run_wrk "$t" warmup "$WARMUP"; done

: >"$TMP/runs.jsonl"
for r in $(seq 1 "$RUNS"); do
  for t in $TARGETS; do
    run_wrk "$t" "$r" "$DURATION"
    if has_target engramd && ! kill -0 "$ENGRAM_PID" 2>/dev/null; then
      rc=0; wait "$ENGRAM_PID" || rc=$?
      cp "$TMP/engramd.log" "/tmp/engram-bench-health-engramd.log"
      tail -n 30 "$TMP/engramd.log" >&2
      [ "$rc" -gt 128 ] && rc="$rc (signal $(kill -l $(( rc - 128 ))))"
      die "engramd exited during the run, status $rc (log kept in /tmp/engram-bench-health-engramd.log)"
    fi
  done
done

# ---------------------------------------------------------------- metadata + report

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
engramd_version=n/a buildtype=n/a pg_version=n/a redis_version=n/a
if has_target engramd; then
  engramd_version=$("$ENGRAMD" version 2>/dev/null | head -n1 || echo "?")
  bo=$(dirname "$ENGRAMD")/meson-info/intro-buildoptions.json
  [ -f "$bo" ] && buildtype=$(jq -r '.[] | select(.name == "buildtype") | .value' "$bo")
  pg_version=$("$PGBIN/postgres" --version | awk '{print $3}')
  redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
fi
resp_json=$(for t in "${!RESP_BYTES[@]}"; do printf '%s\t%s\n' "$t" "${RESP_BYTES[$t]}"; done \
  | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): .[1]}) | add // {}')

jq -n \
  --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --argjson nproc "$NCPU" \
  --arg kernel "$(uname -sr)" \
  --arg load "$LOADAVG" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --arg wrk "$(wrk -v 2>&1 | head -n1 | awk '{print $2}')" \
  --arg nginx "$(nginx -v 2>&1 | sed 's|.*nginx/||')" \
  --arg commit "$commit" --arg ev "$engramd_version" --arg bt "$buildtype" \
  --arg pg "$pg_version" --arg redis "$redis_version" \
  --argjson resp "$resp_json" \
  --arg dur "$DURATION" --arg warm "$WARMUP" --argjson conns "$CONNS" --argjson threads "$THREADS" \
  --argjson runs "$RUNS" --arg targets "$TARGETS" --arg wcpu "$WRK_CPUS" --arg scpu "$SERVER_CPUS" \
  --arg n2cpu "$NGINX2_CPUS" --arg ll "$LOG_LEVEL" \
  '{date: $date, nproc: $nproc, kernel: $kernel, cpu_model: $cpu, wrk_version: $wrk, nginx_version: $nginx,
    loadavg_before: $load, engramd_commit: $commit, engramd_version: $ev, engramd_buildtype: $bt, pg_version: $pg,
    redis_version: $redis, resp_bytes: $resp,
    settings: {duration: $dur, warmup: $warm, connections: $conns, threads: $threads, runs: $runs,
               targets: ($targets | split(" ")), wrk_cpus: $wcpu, server_cpus: $scpu,
               nginx2_cpus: $n2cpu, engram_log_level: $ll}}' >"$TMP/meta.json"

summary=$("$PY" "$HERE/summarize.py" "$TMP/meta.json" "$TMP/runs.jsonl" "$RESULTS")
printf '%s\n' "$summary"
log "results: $RESULTS/health.md, $RESULTS/health.json ($(( SECONDS - START )) s)"

if [ "${BENCH_GATE:-0}" = 1 ] && grep -q ': FAIL$' <<<"$summary"; then exit 3; fi
