#!/usr/bin/env bash
# bench/api/floor.sh: how much of issue #5's write target any stored answer leaves, on a pgbench
# model of the keyed create (PostgreSQL only: no engramd, no HTTP, no sequencer).
#
# interleave.sh measures what all layers cost; nearly all of it is PostgreSQL's work. This asks
# what the least is that a durable Idempotency-Key answer written in the same transaction as the
# effect (what #5 requires) costs here, whatever engramd does around it, and how close engramd's
# keyed create comes to it. Each variant is one pgbench transaction, one pipeline with one Sync,
# as engramd sends a batch (src/db/pool.c), with the statements of src/api/memories_write.c and
# src/api/idempotency.c:
#   plain   mem_insert + outbox_memory_created, audit columns NULL: an unkeyed create, auth off
#   keyed   mem_insert + outbox_memory_created_answered: engramd's keyed, audited create, all
#           layers on (the outbox INSERT as a CTE, the claim's advisory lock, then a plain INSERT
#           of the answer, in one statement: EG__API_IDEM_ANSWERED in src/api/api_int.h)
#   apart   the same up to a229f27: outbox (audit set), then the answer's INSERT as a statement
#           of its own, under a local lock_timeout instead of the claim
#   claimed idem_claim + mem_insert + outbox (audit set) + the INSERT ... ON CONFLICT store that
#           engramd used for creates up to 42524ca (with the claim as a statement of its own)
#   row     mem_insert + outbox (audit set) + one plain INSERT of the answer into
#           idempotency_answers: the floor of any design that keeps answers in their own table
#           (no claim, no check for an earlier answer: not correct, only the least work)
#   outbox  idem_claim + mem_insert + an outbox row (audit set) that also carries the answer,
#           unique on its scope (a partial index; event_outbox_x, a copy of event_outbox): the
#           floor of a design that stores answers on the write's outbox row and has the
#           sequencer move them. Its other costs (a re-check statement, the move) are left out.
# Rounds run every variant once for SLICE, in an order rotated each round (so each one runs in
# each position equally often); the cost of a variant in a round is 1 - its tps / plain's tps,
# and the estimate is the median over the rounds with a bootstrap 95 % interval.
# The statements are in floor-sql.sh (rowcost.sh times them one backend at a time).
# Results: a section appended to bench/results/layers.md and bench/results/floor.json.
#
# Environment (all optional): BENCH_ROUNDS=30 BENCH_SLICE=2s BENCH_CLIENTS=8 (engramd's default
# database pool) BENCH_VARIANTS='plain keyed apart row outbox' (plain is the base; claimed is
# also there) BENCH_PG_OPTS='' (e.g. "-c synchronous_commit=off" for a CPU-bound database;
# the default is PostgreSQL's defaults, as interleave.sh) BENCH_RESULTS_DIR=bench/results
# ENGRAMD=build/engramd (for `engramd migrate`)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin # used by bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-30}
SLICE=${BENCH_SLICE:-2s}
CLIENTS=${BENCH_CLIENTS:-8}
PG_OPTS=${BENCH_PG_OPTS:-}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
log() { printf 'bench/floor: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
read -r -a VARIANTS <<<"${BENCH_VARIANTS:-plain keyed apart row outbox}"
case " ${VARIANTS[*]} " in *" plain "*) ;; *) die "BENCH_VARIANTS must include plain (the base)" ;; esac

for c in pgbench runuser python3 jq; do command -v "$c" >/dev/null || die "$c not found (run ops/setup)"; done

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init floor
START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
build_engramd
# shellcheck source=bench/api/floor-sql.sh
. "$HERE/floor-sql.sh"
# shellcheck disable=SC2086 # PG_OPTS is a list of -c options
floor_db $PG_OPTS

script() { # name statements...
  local f=$TMP/$1.sql; shift
  { printf '\\set r random(1, 9000000000000000000)\n\\set w random(1, 32)\n\\startpipeline\n'
    printf '%s\n' "$@"; printf '\\endpipeline\n'; } >"$f"
}
script plain "$MEM" "$OUTBOX_OFF"
script keyed "$MEM" "$ANSWERED"
script apart "$MEM" "$OUTBOX_ALL" "$STORE_APART"
script claimed "$CLAIM" "$MEM" "$OUTBOX_ALL" "$STORE_CLAIMED"
script row "$MEM" "$OUTBOX_ALL" "$STORE_ROW"
script outbox "$CLAIM" "$MEM" "$OUTBOX_ANSWER"

wal() { "${PSQL_SU[@]}" -d engram -tA -F' ' -c "SELECT wal_bytes, wal_sync FROM pg_stat_wal"; }
# run VARIANT ROUND SECONDS: one pgbench run; appends a JSON line to runs.jsonl.
run() {
  local v=$1 round=$2 s=$3 out=$TMP/pgbench-$1-$2.txt w0 w1 tps n failed _
  w0=$(wal)
  pgbench -h 127.0.0.1 -p "$PG_PORT" -U engram -n -M prepared -c "$CLIENTS" -j 1 -T "$s" \
    -f "$TMP/$v.sql" engram >"$out" 2>&1 || { cat "$out" >&2; die "pgbench ($v) failed"; }
  w1=$(wal)
  read -r n tps failed _ <<<"$(pgbench_result "$out")"
  if [ "$n" -le 0 ]; then cat "$out" >&2; die "no result from pgbench ($v)"; fi
  [ "$round" = warmup ] && return 0
  local b0 s0 b1 s1
  read -r b0 s0 <<<"$w0"; read -r b1 s1 <<<"$w1"
  jq -nc --arg v "$v" --arg r "$round" --argjson tps "$tps" --argjson n "$n" \
    --argjson failed "$failed" --argjson wb $(( b1 - b0 )) --argjson ws $(( s1 - s0 )) \
    '{variant: $v, round: ($r | tonumber), tps: $tps, transactions: $n, failed: $failed,
      wal_bytes: $wb, wal_syncs: $ws}' >>"$TMP/runs.jsonl"
  printf '  round %s %-6s %7.0f tps  %5.0f B WAL/tx  %4.1f tx/sync\n' "$round" "$v" "$tps" \
    "$(( (b1 - b0) / n ))" "$(awk -v n="$n" -v s=$(( s1 - s0 )) 'BEGIN { print (s ? n / s : 0) }')" >&2
}

SECS=$(secs "$SLICE")
log "PostgreSQL ${PG_OPTS:-defaults}; pgbench -M prepared -c $CLIENTS; warm-up: each variant once"
for v in "${VARIANTS[@]}"; do run "$v" warmup 2; done
log "$ROUNDS rounds of ${SLICE} per variant, order rotated each round"
: >"$TMP/runs.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  for i in "${!VARIANTS[@]}"; do run "${VARIANTS[$(( (i + r) % ${#VARIANTS[@]} ))]}" "$r" "$SECS"; done
done

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
mkdir -p "$RESULTS"
python3 "$HERE/floor.py" "$TMP/runs.jsonl" "$RESULTS/floor.json" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "commit=$commit" "load=$LOADAVG" "rounds=$ROUNDS" \
  "slice=$SLICE" "clients=$CLIENTS" "pg=${PG_OPTS:-defaults (synchronous_commit=on)}" \
  | tee -a "$RESULTS/layers.md" >&2
log "results: $RESULTS/layers.md, $RESULTS/floor.json ($(( SECONDS - START )) s)"
