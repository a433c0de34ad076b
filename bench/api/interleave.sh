#!/usr/bin/env bash
# bench/api/interleave.sh: issue #5's write target (all layers together cost <= 10 % of write
# throughput), measured by interleaving short runs of the two settings.
#
# Why a second estimator. layers.sh restarts engramd for each setting and runs 10 s of writes;
# on this machine a single 10 s run spreads from 1,500 to 3,000 writes/s with the host's load
# (its vCPUs change speed minutes apart), so 40 rounds still left a 95 % interval of 8-19 %.
# Here both settings run at once, each in its own engramd on the same database, and the load
# alternates between them in short slices: only one is loaded at any moment (so they do not
# share queues, which would pull their rates together), and drift slower than a slice hits both.
#   off   CORE's open API: ENGRAM_AUTH=off, no Idempotency-Key, no rate limit
#   all   API keys (every request carries a cached Bearer key, every write its audit record),
#         an Idempotency-Key on every write, a rate limit far above the load (counted in Redis)
# A third engramd takes no load and is started first, so it holds the sequencer's lead: the
# events of both settings are moved by the same sequencer (the audit records with them), and
# neither pays for it on its own CPU. The slices of a pair run in ABBA order (off-all, then
# all-off), so a steady drift cancels; the cost of a pair is 1 - all/off. The database grows
# during the run (no truncation): both settings write into the same tables, turn about.
# Results: a section appended to bench/results/layers.md and bench/results/interleave.json.
#
# Environment (all optional): BENCH_PAIRS=60 BENCH_SLICE=2s BENCH_WARMUP=3s BENCH_CONNECTIONS=16
# BENCH_LOAD_CPUS=1 BENCH_SERVER_CPUS=0 BENCH_ENGRAM_LOG_LEVEL=warn BENCH_RESULTS_DIR=bench/results
# BENCH_GATE=1 (exit 3 when the target is missed) ENGRAMD=build/engramd
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin # used by bench/lib.sh

PAIRS=${BENCH_PAIRS:-60}
SLICE=${BENCH_SLICE:-2s}
WARMUP=${BENCH_WARMUP:-3s}
CONNS=${BENCH_CONNECTIONS:-16}
POOL_SIZE=''
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
LOG_LEVEL=${BENCH_ENGRAM_LOG_LEVEL:-warn}
PROJECT=bench
log() { printf 'bench/interleave: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in wrk taskset curl jq ss pgrep getconf redis-server redis-cli runuser python3; do
  command -v "$c" >/dev/null || die "$c not found (run ops/setup)"
done

BENCH_NAME=interleave
# shellcheck source=bench/api/lib.sh
. "$HERE/lib.sh"

# The value of an unlabelled gauge in engramd's /metrics.
gauge() { curl -fsS -m 5 "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }

START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
TAG=i$$
build_engramd
log "engramd $ENGRAMD; load on CPU '${LOAD_CPUS:-any}', engramd on CPU '${SERVER_CPUS:-any}'"
start_pg
start_redis

ENGRAM_NAME=sequencer ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=off)
start_engramd
SEQ_BASE=$BASE
for _ in $(seq 1 50); do [ "$(gauge "$SEQ_BASE" sequencer_leader)" = 1 ] && break; sleep 0.1; done
[ "$(gauge "$SEQ_BASE" sequencer_leader)" = 1 ] || die "the load-free instance did not take the sequencer's lead"

ENGRAM_NAME=off ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=off)
start_engramd
OFF_BASE=$BASE OFF_PID=$ENGRAM_PID
API_KEY=$(DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram" "$ENGRAMD" keys create \
  --project "$PROJECT" --scopes memories:read,memories:write --name bench | head -n1 | jq -r .key)
[[ "$API_KEY" == eg_* ]] || die "could not create an API key"
ENGRAM_NAME=all ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=on ENGRAM_RATE_LIMIT=100000000)
start_engramd
ALL_BASE=$BASE ALL_PID=$ENGRAM_PID

# Each setting is what it claims: without a key `all` refuses and `off` answers; `all` sends the
# rate limit's headers; neither loaded instance sequences.
LIST="/api/v1/memories?subject_id=probe&limit=1"
probe() { curl -sS -m 5 -D - -o /dev/null -H "x-project-id: $PROJECT" "$@"; }
probe "$OFF_BASE$LIST" | head -n1 | grep -q ' 200' || die "off: GET $LIST did not answer 200"
probe "$ALL_BASE$LIST" | head -n1 | grep -q ' 401' || die "all: a request without a key was not refused"
probe -H "Authorization: Bearer $API_KEY" "$ALL_BASE$LIST" | grep -qi '^ratelimit-policy:' \
  || die "all: no RateLimit-Policy header"
for b in "$OFF_BASE" "$ALL_BASE"; do
  [ "$(gauge "$b" sequencer_leader)" = 0 ] || die "$b leads the sequencer"
done

: >"$TMP/runs.jsonl"
# One slice of writes against one setting (BASE and ENGRAM_PID are run_wrk's target).
slice() {
  local cfg=$1 round=$2 dur=$3 env
  env=("BENCH_PROJECT=$PROJECT" "BENCH_TAG=$TAG-$cfg-$round" BENCH_SUBJECT_MODE=unique)
  if [ "$cfg" = all ]; then
    BASE=$ALL_BASE ENGRAM_PID=$ALL_PID ENGRAM_NAME=all
    env+=("BENCH_API_KEY=$API_KEY" BENCH_IDEMPOTENCY=1)
  else
    BASE=$OFF_BASE ENGRAM_PID=$OFF_PID ENGRAM_NAME=off
  fi
  run_wrk "write_$cfg" "$round" "$dur" write.lua "${env[@]}"
}

log "warm-up: each setting once ($WARMUP)"
slice off warmup "$WARMUP"
slice all warmup "$WARMUP"
log "$PAIRS pairs of $SLICE slices, ABBA order"
for p in $(seq 1 "$PAIRS"); do
  if (( p % 2 )); then slice off "$p" "$SLICE"; slice all "$p" "$SLICE"
  else slice all "$p" "$SLICE"; slice off "$p" "$SLICE"; fi
done
ENGRAM_NAME=sequencer
IDEM_ROWS=$(q "select count(*) from idempotency_answers")
DUP_MEMS=$(q "select count(*) - count(distinct text) from memories where project_id = '$PROJECT'")
BACKLOG=$(q "select count(*) from event_outbox")

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
mkdir -p "$RESULTS"
[ -f "$RESULTS/layers.md" ] || printf '# The cost of the production layers (bench/api/layers.sh, issue #5)\n' >"$RESULTS/layers.md"
verdict=$(python3 "$HERE/pairs.py" "$TMP/runs.jsonl" "$RESULTS/interleave.json" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "commit=$commit" "load=$LOADAVG" "pairs=$PAIRS" \
  "slice=$SLICE" "conns=$CONNS" "load_cpus=${LOAD_CPUS:-any}" "server_cpus=${SERVER_CPUS:-any}" \
  "idem_rows=$IDEM_ROWS" "dup_mems=$DUP_MEMS" "backlog=$BACKLOG" | tee -a "$RESULTS/layers.md" | tail -n1)
log "results: $RESULTS/layers.md, $RESULTS/interleave.json ($(( SECONDS - START )) s)"
if [ "${BENCH_GATE:-0}" = 1 ] && [[ "$verdict" == *FAIL* ]]; then exit 3; fi
