#!/usr/bin/env python3
"""bench/api/floor.py: the summary of bench/api/floor.sh.

Usage: floor.py RUNS.jsonl OUT.json key=value...

RUNS.jsonl holds one pgbench record per variant and round. The cost of a variant in a round is
100 * (1 - its tps / plain's tps in that round); each variant's estimate is the median over the
rounds with a bootstrap 95 % interval (pairs.py's). Writes OUT.json and prints a markdown section.
"""
import json
import statistics
import sys

from pairs import bootstrap_median, write_json

WHAT = {
    "plain": "unkeyed create, audit columns NULL (the base)",
    "keyed": "engramd's keyed, audited create: insert, then outbox row and answer in one statement",
    "apart": "the same up to a229f27: the answer's INSERT a statement of its own",
    "claimed": "the same up to 42524ca: claim statement, INSERT ... ON CONFLICT store",
    "row": "floor of an answer in its own table: one plain INSERT, no claim, no check",
    "outbox": "floor of an answer on the outbox row: claim, insert, outbox row with the answer",
}


def main():
    runs_path, out_path = sys.argv[1], sys.argv[2]
    meta = dict(a.split("=", 1) for a in sys.argv[3:])
    rounds = {}
    for line in open(runs_path, encoding="utf-8"):
        r = json.loads(line)
        rounds.setdefault(r["round"], {})[r["variant"]] = r
    variants = {}
    for v in WHAT:
        rs = [x[v] for x in rounds.values() if v in x]
        if not rs:
            continue  # not run (BENCH_VARIANTS)
        costs = [100.0 * (1.0 - x[v]["tps"] / x["plain"]["tps"])
                 for x in rounds.values() if v in x and "plain" in x]
        tx = sum(r["transactions"] for r in rs)
        variants[v] = {
            "tps_median": statistics.median(r["tps"] for r in rs),
            "wal_bytes_per_tx": sum(r["wal_bytes"] for r in rs) / tx,
            "tx_per_wal_sync": tx / max(1, sum(r["wal_syncs"] for r in rs)),
            "failed": sum(r["failed"] for r in rs),
        }
        if v != "plain":
            lo, hi = bootstrap_median(costs)
            variants[v].update(cost_pct_median=statistics.median(costs), cost_pct_ci95=[lo, hi])
    out = {"date": meta.get("date"), "engramd_commit": meta.get("commit"),
           "loadavg_before": meta.get("load"),
           "settings": {"rounds": len(rounds), "slice": meta.get("slice"),
                        "clients": meta.get("clients"), "postgresql": meta.get("pg")},
           "variants": variants}
    write_json(out_path, out)

    print(f"\n## {out['date']} the floor of a stored answer (bench/api/floor.sh, commit"
          f" {out['engramd_commit']}, load before {out['loadavg_before']})\n")
    print(f"pgbench -M prepared -c {meta.get('clients')}, one pipeline per transaction;"
          f" {len(rounds)} rounds of {meta.get('slice')} per variant, order rotated each round;"
          f" PostgreSQL {meta.get('pg')}; no engramd, no sequencer.\n")
    print("| variant | what | tps (median) | cost vs plain (median, 95 % interval) |"
          " WAL B/tx | tx per WAL sync | failed |")
    print("|---|---|---|---|---|---|---|")
    for v, what in WHAT.items():
        if v not in variants:
            continue
        x = variants[v]
        cost = ("base" if v == "plain" else
                f"**{x['cost_pct_median']:.1f} %** ({x['cost_pct_ci95'][0]:.1f}-"
                f"{x['cost_pct_ci95'][1]:.1f} %)")
        print(f"| {v} | {what} | {x['tps_median']:.0f} | {cost} | {x['wal_bytes_per_tx']:.0f} |"
              f" {x['tx_per_wal_sync']:.1f} | {x['failed']} |")


if __name__ == "__main__":
    main()
