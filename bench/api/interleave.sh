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
# The cost of one layer, or of all on reads, is measured the same way against `off`:
# BENCH_SETTING picks the other side and BENCH_SCENARIO the load:
#   all          as above (the default)
#   auth         API keys alone: a cached Bearer key on every request, an audit record per write
#   idempotency  an Idempotency-Key on every write alone (auth off)
#   ratelimit    the rate limit alone, per client address (auth off)
#   write        creates of new memories, a unique subject per request (the default)
#   read         GET of one page (limit 50) of a 1,000-memory subject, loaded before the run
# wrk does not count statuses here (write.lua's BENCH_STATUS_COUNTS=0): building each response's
# headers into a Lua table cost the load generator, on the server's CPUs, about 9 us more a
# request for `all` (the rate limit's two headers) than for `off`, about 1 point of the cost.
# engramd's own counts (http_requests_total) are checked instead, and in the write scenario each
# side's memories and stored answers against its 201s.
# Results: a section appended to bench/results/layers.md, and bench/results/interleave.json
# (write, all) or interleave-SCENARIO-SETTING.json (the others).
#
# Environment (all optional): BENCH_PAIRS=60 BENCH_SLICE=2s BENCH_WARMUP=3s BENCH_CONNECTIONS=16
# BENCH_SETTING=all BENCH_SCENARIO=write
# BENCH_LOAD_CPUS=1 BENCH_SERVER_CPUS=0 BENCH_ENGRAM_LOG_LEVEL=warn BENCH_RESULTS_DIR=bench/results
# BENCH_GATE=1 (exit 3 when the target is missed; write and all only) ENGRAMD=build/engramd
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
SETTING=${BENCH_SETTING:-all}
SCENARIO=${BENCH_SCENARIO:-write}
log() { printf 'bench/interleave: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$SETTING" in all|auth|idempotency|ratelimit) ;; *) die "BENCH_SETTING: all, auth, idempotency or ratelimit" ;; esac
case "$SCENARIO" in write|read) ;; *) die "BENCH_SCENARIO: write or read" ;; esac

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
# The other side: the layers of SETTING on, the rest as in off.
case "$SETTING" in
  all) ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=on ENGRAM_RATE_LIMIT=100000000) ;;
  auth) ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=on) ;;
  idempotency) ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=off) ;;
  ratelimit) ENGRAM_EXTRA_ENV=(ENGRAM_AUTH=off ENGRAM_RATE_LIMIT=100000000) ;;
esac
ENGRAM_NAME=$SETTING
start_engramd
ALL_BASE=$BASE ALL_PID=$ENGRAM_PID
KEYED=0 IDEM=0
case "$SETTING" in all|auth) KEYED=1 ;; esac
case "$SETTING" in all|idempotency) IDEM=1 ;; esac
AUTH_HDR=()
[ "$KEYED" = 1 ] && AUTH_HDR=(-H "Authorization: Bearer $API_KEY")

# Each setting is what it claims: without a key a keyed setting refuses and `off` answers; a
# rate-limited one sends the rate limit's headers, the others do not; neither loaded instance
# sequences.
LIST="/api/v1/memories?subject_id=probe&limit=1"
probe() { curl -sS -m 5 -D - -o /dev/null -H "x-project-id: $PROJECT" "$@"; }
probe "$OFF_BASE$LIST" | head -n1 | grep -q ' 200' || die "off: GET $LIST did not answer 200"
if [ "$KEYED" = 1 ]; then
  probe "$ALL_BASE$LIST" | head -n1 | grep -q ' 401' || die "$SETTING: a request without a key was not refused"
fi
probe "${AUTH_HDR[@]}" "$ALL_BASE$LIST" | head -n1 | grep -q ' 200' || die "$SETTING: GET $LIST did not answer 200"
if probe "${AUTH_HDR[@]}" "$ALL_BASE$LIST" | grep -qi '^ratelimit-policy:'; then
  case "$SETTING" in all|ratelimit) ;; *) die "$SETTING: the rate limit is on" ;; esac
else
  case "$SETTING" in all|ratelimit) die "$SETTING: no RateLimit-Policy header" ;; esac
fi
for b in "$OFF_BASE" "$ALL_BASE"; do
  [ "$(gauge "$b" sequencer_leader)" = 0 ] || die "$b leads the sequencer"
done

# The read scenario's subject: 1,000 memories, written before the run and analyzed.
READ_PATH="/api/v1/memories?subject_id=read-1k&limit=50"
if [ "$SCENARIO" = read ]; then
  q "INSERT INTO memories (id, project_id, subject_id, text, kind, importance, confidence, status,
       is_deleted, source_type, created_at, updated_at)
     SELECT 'mem_read_' || i, '$PROJECT', 'read-1k', 'note ' || i || ' about ' || w[1 + i % 8],
       'fact', (i * 37) % 101, 0.9, 'active', false, 'explicit',
       now() - i * interval '1 second', now() - i * interval '1 second'
     FROM generate_series(1, 1000) i,
       (SELECT ARRAY['apple','river','stone','cloud','maple','violet','copper','harbor'] AS w) x;
     ANALYZE memories" >/dev/null
  [ "$(probe "${AUTH_HDR[@]}" "$ALL_BASE$READ_PATH" | head -n1 | grep -c ' 200')" = 1 ] \
    || die "$SETTING: GET $READ_PATH did not answer 200"
fi

: >"$TMP/runs.jsonl"
# One slice of the scenario against one setting (BASE and ENGRAM_PID are run_wrk's target).
slice() {
  local cfg=$1 round=$2 dur=$3 env
  if [ "$SCENARIO" = write ]; then
    env=("BENCH_PROJECT=$PROJECT" "BENCH_TAG=$TAG-$cfg-$round" BENCH_SUBJECT_MODE=unique)
  else
    env=("BENCH_PROJECT=$PROJECT" "BENCH_PATHS=$READ_PATH")
  fi
  if [ "$cfg" = off ]; then
    BASE=$OFF_BASE ENGRAM_PID=$OFF_PID ENGRAM_NAME=off
  else
    BASE=$ALL_BASE ENGRAM_PID=$ALL_PID ENGRAM_NAME=$SETTING
    [ "$KEYED" = 1 ] && env+=("BENCH_API_KEY=$API_KEY")
    [ "$IDEM" = 1 ] && env+=(BENCH_IDEMPOTENCY=1)
  fi
  # No status counting in wrk (write.lua): engramd's own counts are checked after the run.
  run_wrk "${SCENARIO}_$cfg" "$round" "$dur" "$SCENARIO.lua" "${env[@]}" BENCH_STATUS_COUNTS=0
}

# The scenario's requests by status, as the engramd at $1 counted them: "status count" lines.
METHOD=POST WANT=201
[ "$SCENARIO" = read ] && METHOD=GET WANT=200
statuses() {
  local sel="http_requests_total{method=\"$METHOD\",route=\"/api/v1/memories\",status=\""
  curl -fsS -m 5 "$1/metrics" | awk -v sel="$sel" \
    'index($1, sel) == 1 { s = substr($1, length(sel) + 1); sub(/".*/, "", s); print s, $2 }'
}
statuses "$OFF_BASE" >"$TMP/status-off-before" || die "off: no /metrics"
statuses "$ALL_BASE" >"$TMP/status-$SETTING-before" || die "$SETTING: no /metrics"

log "warm-up: each setting once ($WARMUP)"
slice off warmup "$WARMUP"
slice "$SETTING" warmup "$WARMUP"
log "$PAIRS pairs of $SLICE $SCENARIO slices, off and $SETTING, ABBA order"
for p in $(seq 1 "$PAIRS"); do
  if (( p % 2 )); then slice off "$p" "$SLICE"; slice "$SETTING" "$p" "$SLICE"
  else slice "$SETTING" "$p" "$SLICE"; slice off "$p" "$SLICE"; fi
done
ENGRAM_NAME=sequencer
IDEM_ROWS=$(q "select count(*) from idempotency_answers")

# What each engramd answered during the run (its metrics, less the probes before it): WANT for
# every request, or 499 for the few still in flight when a slice ended (wrk closed their
# connections). In the write scenario each side's memories are between its 201s and its 201s
# plus 499s: fewer would be a 201 without its write (a replay, or a lost write), more a write
# no request asked for; with an Idempotency-Key, likewise its stored answers.
STATUS_OTHER=0 STATUS_NOTE=""
for side in off "$SETTING"; do
  base=$ALL_BASE
  [ "$side" = off ] && base=$OFF_BASE
  statuses "$base" >"$TMP/status-$side-after" || die "$side: no /metrics"
  read -r ok gone other < <(awk -v w="$WANT" 'FILENAME == ARGV[1] { before[$1] = $2; next }
    { n = $2 - before[$1]; if ($1 == w) ok += n; else if ($1 == 499) gone += n; else other += n }
    END { print ok + 0, gone + 0, other + 0 }' "$TMP/status-$side-before" "$TMP/status-$side-after")
  STATUS_OTHER=$(( STATUS_OTHER + other ))
  STATUS_NOTE+="${STATUS_NOTE:+; }$side $ok × $WANT, $gone × 499, $other other"
  [ "$SCENARIO" = write ] || continue
  made=$(q "select count(*) from memories where subject_id like 's-$TAG-$side-%'")
  (( made >= ok && made <= ok + gone )) \
    || die "$side: $made memories made for $ok answers 201 and $gone requests left in flight"
  if [ "$side" != off ] && [ "$IDEM" = 1 ]; then
    (( IDEM_ROWS >= ok && IDEM_ROWS <= ok + gone )) \
      || die "$side: $IDEM_ROWS stored answers for $ok answers 201 and $gone requests left in flight"
  fi
done
DUP_MEMS=$(q "select count(*) - count(distinct text) from memories where project_id = '$PROJECT'")
BACKLOG=$(q "select count(*) from event_outbox")

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
mkdir -p "$RESULTS"
[ -f "$RESULTS/layers.md" ] || printf '# The cost of the production layers (bench/api/layers.sh, issue #5)\n' >"$RESULTS/layers.md"
JSON=$RESULTS/interleave.json
[ "$SCENARIO/$SETTING" = write/all ] || JSON=$RESULTS/interleave-$SCENARIO-$SETTING.json
verdict=$(python3 "$HERE/pairs.py" "$TMP/runs.jsonl" "$JSON" "setting=$SETTING" "scenario=$SCENARIO" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "commit=$commit" "load=$LOADAVG" "pairs=$PAIRS" \
  "slice=$SLICE" "conns=$CONNS" "load_cpus=${LOAD_CPUS:-any}" "server_cpus=${SERVER_CPUS:-any}" \
  "idem_rows=$IDEM_ROWS" "dup_mems=$DUP_MEMS" "backlog=$BACKLOG" \
  "status_other=$STATUS_OTHER" "statuses=$STATUS_NOTE" | tee -a "$RESULTS/layers.md" | tail -n1)
log "results: $RESULTS/layers.md, $JSON ($(( SECONDS - START )) s)"
if [ "${BENCH_GATE:-0}" = 1 ] && [[ "$verdict" == *FAIL* ]]; then exit 3; fi
