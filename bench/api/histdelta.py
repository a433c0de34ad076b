#!/usr/bin/env python3
"""Server-side latency over a window, from two scrapes of engramd's /metrics (before, after).

usage: histdelta.py BEFORE AFTER
Prints one JSON object: for POST /api/v1/memories (http_request_duration_seconds) and for every
database batch (db_query_duration_seconds), the count in the window, the fraction within each
bucket bound, and p50/p99 as the bucket bound that holds them (a histogram gives no finer answer).
Standard library only."""
import json
import re
import sys

LE = re.compile(r'le="([^"]+)"')


def buckets(path, name, labels):
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith(name + "_bucket") and all(l in line for l in labels):
                out[LE.search(line).group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def delta(before, after, name, labels):
    a, b = buckets(before, name, labels), buckets(after, name, labels)
    if "+Inf" not in b:
        return None
    n = b["+Inf"] - a.get("+Inf", 0.0)
    if n <= 0:
        return {"count": 0}
    bounds = sorted((k for k in b if k != "+Inf"), key=float) + ["+Inf"]
    within = {k: (b[k] - a.get(k, 0.0)) / n for k in bounds}

    def q(p):
        for k in bounds:
            if within[k] >= p:
                return None if k == "+Inf" else float(k) * 1000
        return None
    return {"count": int(n), "p50_le_ms": q(0.50), "p99_le_ms": q(0.99),
            "within_ms": {("inf" if k == "+Inf" else "%g" % (float(k) * 1000)): round(within[k], 5)
                          for k in bounds}}


def main():
    before, after = sys.argv[1], sys.argv[2]
    print(json.dumps({
        "post_memories": delta(before, after, "http_request_duration_seconds",
                               ['route="/api/v1/memories"', 'method="POST"']),
        "db_batches": delta(before, after, "db_query_duration_seconds", []),
    }))


if __name__ == "__main__":
    main()
