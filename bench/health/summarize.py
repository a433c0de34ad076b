#!/usr/bin/python3
"""Summarize one bench/health/run.sh run: writes <results>/health.json (latest run) and appends a
dated section to <results>/health.md. Standard library only (Debian's /usr/bin/python3).

usage: summarize.py META_JSON RUNS_JSONL RESULTS_DIR
"""
import json
import os
import statistics
import sys

TARGET_RATIO = 0.90
NOISE_PCT = 10
LABELS = {
    "engramd": "engramd (1 loop)",
    "nginx1": "nginx, 1 worker",
    "nginx2": "nginx, 2 workers (info)",
}
ORDER = ["engramd", "nginx1", "nginx2"]


def ms(us):
    return f"{us / 1000:.3f}"


def med(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def main():
    meta_path, runs_path, out_dir = sys.argv[1:4]
    with open(meta_path) as f:
        meta = json.load(f)
    with open(runs_path) as f:
        runs = [json.loads(line) for line in f if line.strip()]

    targets = [t for t in ORDER if any(r["target"] == t for r in runs)]
    medians = {}
    for t in targets:
        rs = [r for r in runs if r["target"] == t]
        medians[t] = {
            "runs": len(rs),
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_us": statistics.median(r["p50_us"] for r in rs),
            "p90_us": statistics.median(r["p90_us"] for r in rs),
            "p99_us": statistics.median(r["p99_us"] for r in rs),
            "server_cpu_pct": med(r.get("server_cpu_pct") for r in rs),
            "server_cpu_us_per_req": med(r.get("server_cpu_us_per_req") for r in rs),
            "wrk_cpu_pct": med(r.get("wrk_cpu_pct") for r in rs),
            "other_cpu_pct": med(r.get("other_cpu_pct") for r in rs),
            "errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"]
                          + r["err_timeout"] for r in rs),
        }

    ratio = None
    verdict = None
    if "engramd" in medians and "nginx1" in medians and medians["nginx1"]["rps"] > 0:
        ratio = medians["engramd"]["rps"] / medians["nginx1"]["rps"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    cpu_ratio = None
    if ratio is not None and medians["engramd"]["server_cpu_us_per_req"] and medians["nginx1"]["server_cpu_us_per_req"]:
        # > 1: engramd spends less CPU per request than nginx; same 0.90 bar as for req/s.
        cpu_ratio = medians["nginx1"]["server_cpu_us_per_req"] / medians["engramd"]["server_cpu_us_per_req"]

    noisy = [t for t in ("engramd", "nginx1") if t in medians and (medians[t]["other_cpu_pct"] or 0) > NOISE_PCT]
    doc = {
        "benchmark": "health_live",
        "meta": meta,
        "runs": runs,
        "medians": medians,
        "ratio_engramd_over_nginx1": ratio,
        "cpu_efficiency_engramd_vs_nginx1": cpu_ratio,
        "target_ratio": TARGET_RATIO,
        "verdict": verdict,
        "noisy": noisy,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "health.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    m = meta
    s = m["settings"]
    lines = []
    md_path = os.path.join(out_dir, "health.md")
    if not os.path.exists(md_path) or os.path.getsize(md_path) == 0:
        lines += [
            "# GET /health/live: engramd vs nginx (issue #2)",
            "",
            "Produced by `bench/health/run.sh` (see `bench/README.md`). Each section is one run; the",
            "latest run is also in `health.json`. Target: engramd req/s >= 0.90 x nginx with 1 worker.",
            "",
        ]
    lines += [
        f"## {m['date']}",
        "",
        f"- machine: `nproc` {m['nproc']}, {m['cpu_model']}, kernel {m['kernel']}, "
        f"load average before the run {m.get('loadavg_before', 'n/a')}",
        f"- versions: wrk {m['wrk_version']}, nginx {m['nginx_version']}, "
        f"engramd `{m['engramd_commit']}` ({m['engramd_version']}, buildtype {m['engramd_buildtype']}), "
        f"PostgreSQL {m['pg_version']}, Redis {m['redis_version']}",
        f"- load: `wrk -t{s['threads']} -c{s['connections']} -d{s['duration']} --latency` (HTTP/1.1 keep-alive), "
        f"{s['runs']} runs per server alternating, {s['warmup']} warm-up each; "
        f"wrk on CPU {s['wrk_cpus'] or 'any'}, engramd and nginx-1w on CPU {s['server_cpus'] or 'any'}, "
        f"nginx-2w on CPUs {s['nginx2_cpus'] or 'any'}",
        f"- engramd: `ENGRAM_LOG_LEVEL={s['engram_log_level']}`, response {m['resp_bytes'].get('engramd', 'n/a')} bytes; "
        f"nginx: `return 200`, access_log off, stock keep-alive, response {m['resp_bytes'].get('nginx1', 'n/a')} bytes "
        "(header+body)",
        "",
        "| server | run | req/s | p50 ms | p90 ms | p99 ms | errors | server CPU % | server CPU µs/req | wrk CPU % "
        "| other load % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        for r in sorted((r for r in runs if r["target"] == t), key=lambda r: r["round"]):
            err = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
            lines.append(f"| {LABELS[t]} | {r['round']} | {r['rps']:.0f} | {ms(r['p50_us'])} | "
                         f"{ms(r['p90_us'])} | {ms(r['p99_us'])} | {err} | {num(r.get('server_cpu_pct'), '.0f')} | "
                         f"{num(r.get('server_cpu_us_per_req'), '.2f')} | {num(r.get('wrk_cpu_pct'), '.0f')} | "
                         f"{num(r.get('other_cpu_pct'), '.0f')} |")
        md = medians[t]
        lines.append(f"| **{LABELS[t]}** | **median** | **{md['rps']:.0f}** | **{ms(md['p50_us'])}** | "
                     f"**{ms(md['p90_us'])}** | **{ms(md['p99_us'])}** | {md['errors']} | "
                     f"{num(md['server_cpu_pct'], '.0f')} | **{num(md['server_cpu_us_per_req'], '.2f')}** | "
                     f"{num(md['wrk_cpu_pct'], '.0f')} | {num(md['other_cpu_pct'], '.0f')} |")
    lines += [
        "",
        "CPU columns are % of one CPU over the run (from /proc). *other load* is what the rest of the "
        "machine used meanwhile: above about 10 % the run is noisy.",
    ]
    if noisy:
        lines += ["", f"**Warning: noisy run.** Other processes used more than {NOISE_PCT} % of a CPU during the "
                      f"{', '.join(noisy)} runs, so req/s and latency are not comparable with a quiet run. "
                      "Server CPU µs/req is the least affected figure."]
    lines.append("")
    if ratio is not None:
        lines.append(f"**engramd / nginx (1 worker) = {ratio:.3f}** (median req/s; target >= {TARGET_RATIO:.2f}): "
                     f"**{verdict}**")
        if cpu_ratio is not None:
            lines += [
                "",
                f"CPU per request, nginx-1w / engramd = {cpu_ratio:.3f} (> 1: engramd uses less CPU per request). "
                "If wrk's CPU is near 100 % while a server's is well below it, wrk was the bottleneck for that "
                "server: its req/s understates it, and the CPU-per-request figure compares the servers better.",
            ]
    else:
        lines.append("engramd / nginx ratio: not measured in this run (targets: " + ", ".join(targets) + ")")
    lines.append("")
    with open(md_path, "a") as f:
        f.write("\n".join(lines) + "\n")

    # Short summary on stdout for the terminal.
    for t in targets:
        md = medians[t]
        print(f"{LABELS[t]:<26} {md['rps']:>10.0f} req/s  p50 {ms(md['p50_us'])} ms  "
              f"p90 {ms(md['p90_us'])} ms  p99 {ms(md['p99_us'])} ms  errors {md['errors']}  "
              f"server CPU {num(md['server_cpu_pct'], '.0f')}% {num(md['server_cpu_us_per_req'], '.2f')} us/req  "
              f"wrk CPU {num(md['wrk_cpu_pct'], '.0f')}%  other load {num(md['other_cpu_pct'], '.0f')}%")
    if ratio is not None:
        print(f"ratio engramd/nginx-1w = {ratio:.3f} (target >= {TARGET_RATIO:.2f}): {verdict}")
    if cpu_ratio is not None:
        print(f"CPU per request nginx-1w/engramd = {cpu_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
