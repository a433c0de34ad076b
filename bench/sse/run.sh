#!/usr/bin/env bash
# bench/sse/run.sh: issue #4, SSE fan-out under load, against nchan and a bare libuv baseline.
#
# One self-contained run, everything on 127.0.0.1 in a temp dir: a throwaway PostgreSQL 15 and a
# Redis, then, one target after another, the same workload from bench/sse/ssebench:
#   engram     one engramd (pinned to CPU 0) with SUBS subscribers (as many as the fd limit allows);
#   baseline   bench/sse/baseline (CPU 0), --mode single and --mode coalesce;
#   nchan      nginx + nchan, 2 workers, channels in the same Redis;
#   cluster    3 engramd behind HAProxy (ops/haproxy/haproxy.cfg), CLUSTER_SUBS subscribers;
#   cluster_direct  the same 3 engramd, subscribers and writer spread over them without HAProxy
#              (not in the default list: it splits the cluster figure into proxy and engramd).
# Each target: connect SUBS idle subscribers at CONNECT_RATE/s (server RSS before and after gives
# RSS per idle connection), RUNS phases of 1 event/s for IDLE_SECS (p50/p99), then a ramp of event
# rates RAMP_SECS each that stops at the first rate where not every event is delivered within
# DRAIN s or p99 exceeds MAX_P99_MS (the highest passing rate x subscribers is the sustained
# deliveries/s). The load tool runs on CPU 1.
# Results: a dated section appended to bench/results/sse.md, the latest run in sse.json.
#
# Environment (all optional):
#   BENCH_SSE_TARGETS="engram baseline_single baseline_coalesce nchan cluster"
#   BENCH_SSE_SUBS=19000 BENCH_SSE_CLUSTER_SUBS=9000 BENCH_SSE_CONNECT_RATE=2000
#   BENCH_RUNS=3 BENCH_SSE_IDLE_SECS=20       1 event/s phases (medians over RUNS)
#   BENCH_SSE_RAMP="2 3 4 5 6 7 8 10 12"      events/s steps; BENCH_SSE_RAMP_SECS=10
#   BENCH_SSE_MAX_P99_MS=1000 BENCH_SSE_DRAIN=5
#   BENCH_SSE_CATCHUP_MS=                     ENGRAM_SSE_CATCHUP_MS for the cluster (engramd's default)
#   BENCH_LOAD_CPUS=1 BENCH_SERVER_CPUS=0     taskset lists (empty: no pinning) for the load tool and for
#                                             engramd/baseline; BENCH_NCHAN_CPUS= BENCH_CLUSTER_CPUS= (unpinned)
#   BENCH_RESULTS_DIR=bench/results  ENGRAMD=build/engramd
#   BENCH_ENGRAM_AUTH=off                     engramd's ENGRAM_AUTH (the subscribers send no key)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

TARGETS=${BENCH_SSE_TARGETS:-engram baseline_single baseline_coalesce nchan cluster}
SUBS=${BENCH_SSE_SUBS:-19000}
CLUSTER_SUBS=${BENCH_SSE_CLUSTER_SUBS:-9000}
CONNECT_RATE=${BENCH_SSE_CONNECT_RATE:-2000}
RUNS=${BENCH_RUNS:-3}
IDLE_SECS=${BENCH_SSE_IDLE_SECS:-20}
RAMP=${BENCH_SSE_RAMP:-2 3 4 5 6 7 8 10 12}
RAMP_SECS=${BENCH_SSE_RAMP_SECS:-10}
MAX_P99_MS=${BENCH_SSE_MAX_P99_MS:-1000}
DRAIN=${BENCH_SSE_DRAIN:-5}
CATCHUP_MS=${BENCH_SSE_CATCHUP_MS:-}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  LOAD_CPUS=${BENCH_LOAD_CPUS-1}
  SERVER_CPUS=${BENCH_SERVER_CPUS-0}
else
  LOAD_CPUS=${BENCH_LOAD_CPUS-}
  SERVER_CPUS=${BENCH_SERVER_CPUS-}
fi
NCHAN_CPUS=${BENCH_NCHAN_CPUS-}      # nchan's 2 workers and the cluster's 3 engramd + HAProxy
CLUSTER_CPUS=${BENCH_CLUSTER_CPUS-}  # are not pinned by default: one CPU each would starve them

log() { printf 'bench/sse: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in taskset curl jq ss redis-server redis-cli runuser make; do
  command -v "$c" >/dev/null || die "$c not found (run ops/setup)"
done

# ---------------------------------------------------------------- processes, PostgreSQL, Redis

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init sse
ulimit -n 20000 2>/dev/null || true

# ---------------------------------------------------------------- builds, engramd

build() {
  make -s -C "$HERE" ssebench baseline >/dev/null || die "make -C bench/sse failed"
  SSEBENCH=$HERE/ssebench
  BASELINE=$HERE/baseline
  build_engramd
}

# start_engramd NAME CPUS [env...]: starts one engramd on a free port; sets EG_PID and EG_PORT.
start_engramd() {
  local name=$1 cpus=$2; shift 2
  EG_PORT=$(free_port)
  pin "$cpus"
  env DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram" \
      REDIS_URL="redis://127.0.0.1:$REDIS_PORT" ENGRAM_LOG_LEVEL=warn \
      ENGRAM_AUTH="${BENCH_ENGRAM_AUTH:-off}" ENGRAM_MAX_CONNECTIONS=19900 PORT="$EG_PORT" ENGRAM_BIND=127.0.0.1 "$@" \
      "${PIN[@]}" "$ENGRAMD" serve >"$TMP/$name.log" 2>&1 &
  EG_PID=$!
  PIDS+=("$EG_PID")
  if ! wait_http "http://127.0.0.1:$EG_PORT/health/ready" 15; then
    tail -n 30 "$TMP/$name.log" >&2
    die "$name did not answer /health/ready within 15 s"
  fi
}

migrate() {
  DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram" "$ENGRAMD" migrate \
    >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log" >&2; die "engramd migrate failed"; }
}

# ---------------------------------------------------------------- the load tool

phases_args() { # RUNS phases of 1 event/s, then the ramp
  local p='' r
  for _ in $(seq 1 "$RUNS"); do p="$p,1x$IDLE_SECS"; done
  PHASES=${p#,}
  p=''
  for r in $RAMP; do p="$p,${r}x$RAMP_SECS"; done
  RAMPS=${p#,}
}

# run_tool LABEL KIND TARGET SUBS SERVER_PIDS [extra ssebench args...]
run_tool() {
  local label=$1 kind=$2 target=$3 subs=$4 pids=$5 out; shift 5
  out=$TMP/tool-$label.txt
  phases_args
  log "$label: $subs subscribers at $CONNECT_RATE/s, $RUNS x 1 event/s for ${IDLE_SECS}s, ramp [$RAMP] x ${RAMP_SECS}s"
  pin "$LOAD_CPUS"
  "${PIN[@]}" timeout 900 "$SSEBENCH" --kind "$kind" --target "$target" --subs "$subs" \
    --connect-rate "$CONNECT_RATE" --connect-timeout 60 --settle 3 --drain "$DRAIN" \
    --phases "$PHASES" --ramp "$RAMPS" --max-p99-ms "$MAX_P99_MS" \
    --server-pids "$pids" --label "$label" "$@" >"$out" 2>"$TMP/tool-$label.err" \
    || { tail -n 20 "$TMP/tool-$label.err" >&2; die "ssebench failed ($label)"; }
  grep '^ssebench: phase [0-9]*: delivered' "$TMP/tool-$label.err" | sed "s/^ssebench:/  $label/" >&2 || true
  sed -n 's/^SSEJSON //p' "$out" >>"$TMP/runs.jsonl"
}

# ---------------------------------------------------------------- targets

target_engram() {
  start_engramd engramd "$SERVER_CPUS"
  run_tool engram engram "127.0.0.1:$EG_PORT" "$SUBS" "$EG_PID" --project "ssb-engram-$$"
  stop_pid "$EG_PID"
}

target_baseline() { # mode
  local port pid
  port=$(free_port)
  pin "$SERVER_CPUS"
  "${PIN[@]}" "$BASELINE" --port "$port" --mode "$1" 2>"$TMP/baseline-$1.log" &
  pid=$!
  PIDS+=("$pid")
  wait_port "$port" || die "baseline did not listen"
  run_tool "baseline_$1" baseline "127.0.0.1:$port" "$SUBS" "$pid"
  stop_pid "$pid"
}

target_nchan() {
  local dir=$TMP/nchan port master workers
  mkdir -p "$dir/client_body"
  port=$(free_port)
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@REDIS_PORT@#$REDIS_PORT#g" \
      -e "s#@WORKERS@#2#g" "$HERE/nchan.conf.in" >"$dir/nginx.conf"
  pin "$NCHAN_CPUS"
  "${PIN[@]}" nginx -c "$dir/nginx.conf" -p "$dir" 2>"$dir/stderr.log" &
  master=$!
  PIDS+=("$master")
  wait_port "$port" || { cat "$dir/stderr.log" "$dir/error.log" >&2; die "nginx did not listen"; }
  sleep 0.5
  workers=$(pgrep -P "$master" | paste -sd, -)
  run_tool nchan nchan "127.0.0.1:$port" "$SUBS" "$master,$workers" --project ''
  stop_pid "$master"
}

target_cluster() { # lb (through HAProxy) | direct (subscribers and writer spread over the instances)
  local mode=$1 i pids='' lb_port stats_port env=() rund=$TMP/haproxy hp targets=''
  local catchup=()
  [ -n "$CATCHUP_MS" ] && catchup=(ENGRAM_SSE_CATCHUP_MS="$CATCHUP_MS")
  mkdir -p "$rund"
  for i in 1 2 3; do
    start_engramd "engramd-c$i" "$CLUSTER_CPUS" ENGRAM_DB_POOL_SIZE=4 "${catchup[@]}"
    pids="$pids,$EG_PID"
    env+=("ENGRAM_LB_SERVER_$i=127.0.0.1:$EG_PORT")
    targets="$targets,127.0.0.1:$EG_PORT"
  done
  pids=${pids#,}
  if [ "$mode" = direct ]; then
    # The same 3 instances without the proxy: HAProxy's share of the cluster figure.
    run_tool cluster_direct engram "${targets#,}" "$CLUSTER_SUBS" "$pids" --project "ssb-direct-$$"
    for p in ${pids//,/ }; do stop_pid "$p"; done
    return
  fi
  lb_port=$(free_port)
  stats_port=$(free_port)
  env+=("ENGRAM_LB_BIND=127.0.0.1:$lb_port" "ENGRAM_LB_STATS_BIND=127.0.0.1:$stats_port"
        "ENGRAM_LB_ADMIN_SOCK=$rund/admin.sock" "ENGRAM_LB_LOG=stdout"
        "ENGRAM_LB_MAXCONN=$(( CLUSTER_SUBS + 400 ))")
  env "${env[@]}" haproxy -c -f "$ROOT/ops/haproxy/haproxy.cfg" >"$rund/check.log" 2>&1 \
    || { cat "$rund/check.log" >&2; die "haproxy -c failed"; }
  pin "$CLUSTER_CPUS"
  env "${env[@]}" "${PIN[@]}" haproxy -db -f "$ROOT/ops/haproxy/haproxy.cfg" >"$rund/haproxy.log" 2>&1 &
  hp=$!
  PIDS+=("$hp")
  wait_http "http://127.0.0.1:$lb_port/health/ready" 15 || { tail "$rund/haproxy.log" >&2; die "haproxy not ready"; }
  sleep 2.5   # every server seen up by the health checks (rise 2, inter 1s)
  run_tool cluster engram "127.0.0.1:$lb_port" "$CLUSTER_SUBS" "$pids" --project "ssb-cluster-$$"
  # Where the streams landed (engram's own gauge would need #4's metrics; count sockets instead).
  for p in ${pids//,/ }; do
    printf '%s ' "$(ls /proc/"$p"/fd 2>/dev/null | wc -l)"
  done >"$TMP/cluster-fds.txt"
  stop_pid "$hp"
  for p in ${pids//,/ }; do stop_pid "$p"; done
}

# ---------------------------------------------------------------- the run

START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
build
log "engramd $ENGRAMD; servers on CPU '${SERVER_CPUS:-any}' (nchan '${NCHAN_CPUS:-any}'), load on CPU '${LOAD_CPUS:-any}'"
start_pg -c fsync=off -c max_connections=100
start_redis
migrate
: >"$TMP/runs.jsonl"
for t in $TARGETS; do
  case $t in
    engram) target_engram ;;
    baseline_single) target_baseline single ;;
    baseline_coalesce) target_baseline coalesce ;;
    nchan) target_nchan ;;
    cluster) target_cluster lb ;;
    cluster_direct) target_cluster direct ;;
    *) die "unknown target $t" ;;
  esac
done

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
buildtype=n/a
bo=$(dirname "$ENGRAMD")/meson-info/intro-buildoptions.json
[ -f "$bo" ] && buildtype=$(jq -r '.[] | select(.name == "buildtype") | .value' "$bo")
jq -n \
  --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --argjson nproc "$NCPU" --arg kernel "$(uname -sr)" \
  --arg load "$LOADAVG" --arg load_after "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --arg commit "$commit" --arg bt "$buildtype" \
  --arg nginx "$(nginx -v 2>&1 | sed 's/.*nginx\///')" \
  --arg nchan "$(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')" \
  --arg haproxy "$(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}')" \
  --arg redis "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
  --arg libuv "$(dpkg-query -W -f '${Version}' libuv1 2>/dev/null || echo '?')" \
  --arg targets "$TARGETS" --argjson subs "$SUBS" --argjson csubs "$CLUSTER_SUBS" \
  --argjson crate "$CONNECT_RATE" --argjson runs "$RUNS" --argjson idle "$IDLE_SECS" \
  --arg ramp "$RAMP" --argjson rsecs "$RAMP_SECS" --argjson maxp99 "$MAX_P99_MS" --argjson drain "$DRAIN" \
  --arg catchup "${CATCHUP_MS:-default}" --arg lcpu "$LOAD_CPUS" --arg scpu "$SERVER_CPUS" --arg ncpu "$NCHAN_CPUS" --arg ccpu "$CLUSTER_CPUS" \
  --arg cfds "$(cat "$TMP/cluster-fds.txt" 2>/dev/null || true)" \
  '{date: $date, nproc: $nproc, kernel: $kernel, cpu_model: $cpu, loadavg_before: $load, loadavg_after: $load_after,
    engramd_commit: $commit, engramd_buildtype: $bt,
    versions: {nginx: $nginx, nchan: $nchan, haproxy: $haproxy, redis: $redis, libuv: $libuv},
    settings: {targets: $targets, subs: $subs, cluster_subs: $csubs, connect_rate: $crate, runs: $runs,
               idle_secs: $idle, ramp: $ramp, ramp_secs: $rsecs, max_p99_ms: $maxp99, drain_s: $drain,
               cluster_catchup_ms: $catchup, load_cpus: $lcpu, server_cpus: $scpu, nchan_cpus: $ncpu, cluster_cpus: $ccpu},
    cluster_fds_per_instance: $cfds}' >"$TMP/meta.json"
mkdir -p "$RESULTS"
"$PY" "$HERE/summarize.py" "$TMP/meta.json" "$TMP/runs.jsonl" "$RESULTS"
log "results: $RESULTS/sse.md, $RESULTS/sse.json ($(( SECONDS - START )) s)"
