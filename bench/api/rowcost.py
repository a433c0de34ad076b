#!/usr/bin/env python3
"""bench/api/rowcost.py: the summary of bench/api/rowcost.sh.

Usage: rowcost.py TIMES.txt OUT.json key=value...

TIMES.txt holds one line per timed call: round, variant, milliseconds (for `tx` transactions).
A variant's cost in a round is its µs per transaction minus plain's in that round (and minus
audited's, for the parts a stored answer adds to an audited write); each estimate is the median
over the rounds with a bootstrap 95 % interval (pairs.py's). Writes OUT.json and prints a
markdown section.
"""
import statistics
import sys

from pairs import bootstrap_median, write_json

WHAT = {
    "plain": "unkeyed create, audit columns NULL (the base)",
    "audited": "the same with its audit record on the outbox row",
    "keyed": "engramd's keyed, audited create: outbox row and answer in one statement",
    "apart": "the answer's INSERT a statement of its own (up to a229f27)",
    "row": "audited, then a plain INSERT of the answer (primary key and BRIN)",
    "rowpk": "the same into a copy with the primary key only",
    "rowheap": "the same into a copy with no index (the least a row costs)",
    "outbox": "the claim, then an outbox row carrying the answer, unique on its scope",
}


def main():
    times_path, out_path = sys.argv[1], sys.argv[2]
    meta = dict(a.split("=", 1) for a in sys.argv[3:])
    ntx = int(meta["tx"])
    rounds = {}
    for line in open(times_path, encoding="utf-8"):
        r, v, ms = line.split()
        rounds.setdefault(int(r), {})[v] = float(ms) * 1000.0 / ntx
    if not rounds:
        sys.exit("rowcost.py: no timed call in " + times_path)

    def diff(v, base):
        return [x[v] - x[base] for x in rounds.values() if v in x and base in x]

    variants = {}
    for v in WHAT:
        us = [x[v] for x in rounds.values() if v in x]
        if not us:
            continue  # not run (BENCH_VARIANTS)
        row = {"us_per_tx_median": statistics.median(us)}
        for base in ("plain", "audited"):
            d = diff(v, base)
            if v != base and d:
                lo, hi = bootstrap_median(d)
                row["us_vs_" + base] = {"median": statistics.median(d), "ci95": [lo, hi]}
        variants[v] = row
    out = {"date": meta.get("date"), "engramd_commit": meta.get("commit"),
           "loadavg_before": meta.get("load"),
           "settings": {"rounds": len(rounds), "tx_per_call": ntx, "postgresql": meta.get("pg")},
           "variants": variants}
    write_json(out_path, out)

    print(f"\n## {out['date']} what each part of a keyed create costs PostgreSQL (bench/api/rowcost.sh,"
          f" commit {out['engramd_commit']}, load before {out['loadavg_before']})\n")
    print(f"One backend, PL/pgSQL procedures of the statements of floor-sql.sh, {ntx} transactions a"
          f" call, {len(rounds)} rounds, order rotated each round; PostgreSQL {meta.get('pg')}; no"
          " engramd, no sequencer, no network.\n")
    print("| variant | what | µs per transaction (median) | µs more than plain (median, 95 % interval)"
          " | µs more than audited |")
    print("|---|---|---|---|---|")

    def cell(row, base):
        d = row.get("us_vs_" + base)
        if d is None:
            return "base" if base in ("plain", "audited") else ""
        return f"{d['median']:.1f} ({d['ci95'][0]:.1f} to {d['ci95'][1]:.1f})"

    for v, row in variants.items():
        print(f"| {v} | {WHAT[v]} | {row['us_per_tx_median']:.1f} |"
              f" {'base' if v == 'plain' else cell(row, 'plain')} |"
              f" {'base' if v == 'audited' else ('' if v == 'plain' else cell(row, 'audited'))} |")


if __name__ == "__main__":
    main()
