#!/usr/bin/env python3
"""Turns the last `cargo bench --bench layer` run into the BENCHMARKS.md table and chart.

Reads criterion's medians from target/criterion/<group>/<bench>/new/estimates.json, prints a
Markdown table (median, ratio to the bare router of the same axum version) and writes an SVG
bar chart (log scale) to docs/benchmarks.svg. Standard library only.

Usage: python3 scripts/bench-report.py [--svg PATH]
"""

import argparse
import json
import math
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"

# (group, bench, label, baseline (group, bench) or None, ours?)
ROWS = [
    ("router", "bare", "axum 0.8 router, bare", None, None),
    ("router", "floor_outputs_only", "floor: a layer checking nothing, adding only an admitted request's outputs (one extension, two rate-limit fields)", ("router", "bare"), False),
    ("router", "minimal_checks_RS256", "reference: the same checks done as plainly as a hand-written layer would (common::minimal; no hardening)", ("router", "bare"), False),
    ("router", "tower_bearer_cache_hit_RS256", "tower-bearer, cache hit (RS256)", ("router", "bare"), True),
    ("router", "tower_bearer_full_stack_RS256", "tower-bearer, full stack: auth + scope + rate limit (RS256, reused)", ("router", "bare"), True),
    ("router", "tower_bearer_full_stack_one_layer_RS256", "tower-bearer, the same checks in one layer (require_scopes, rate_limit)", ("router", "bare"), True),
    ("router", "tower_bearer_reject_missing", "tower-bearer, 401 without credentials", ("router", "bare"), True),
    ("router", "tower_bearer_rate_limit_only", "tower-bearer rate limit alone (verified principal)", ("router", "bare"), True),
    ("router", "tower_governor_keyed", "tower_governor keyed by Authorization header", ("router", "bare"), False),
    ("router", "tower_http_bearer", "tower-http static bearer check", ("router", "bare"), False),
    ("router", "tower_bearer_cache_miss_HS256", "tower-bearer, first-seen token HS256", ("router", "bare"), True),
    ("router", "tower_bearer_cache_miss_RS256", "tower-bearer, first-seen token RS256", ("router", "bare"), True),
    ("router", "tower_bearer_cache_miss_ES256", "tower-bearer, first-seen token ES256", ("router", "bare"), True),
    ("router", "tower_bearer_cache_miss_EdDSA", "tower-bearer, first-seen token EdDSA", ("router", "bare"), True),
    ("router_axum07", "bare", "axum 0.7 router, bare", None, None),
    ("router_axum07", "jwt_authorizer_RS256", "jwt-authorizer 0.15 (RS256, static key)", ("router_axum07", "bare"), False),
    ("decode", "jsonwebtoken_HS256", "jsonwebtoken::decode HS256 (floor)", None, False),
    ("decode", "jsonwebtoken_RS256", "jsonwebtoken::decode RS256 (floor)", None, False),
    ("decode", "jsonwebtoken_ES256", "jsonwebtoken::decode ES256 (floor)", None, False),
    ("decode", "jsonwebtoken_EdDSA", "jsonwebtoken::decode EdDSA (floor)", None, False),
    ("limiter", "tower_bearer_memory", "tower-bearer memory limiter decision", None, True),
    ("limiter", "governor_keyed", "governor keyed limiter decision", None, False),
    ("limiter", "tower_bearer_memory_2_threads_distinct_callers", "tower-bearer memory, 2 threads, distinct callers", None, True),
    ("limiter", "governor_keyed_2_threads_distinct_callers", "governor keyed, 2 threads, distinct callers", None, False),
    ("limiter", "tower_bearer_memory_2_threads_same_caller", "tower-bearer memory, 2 threads, same caller", None, True),
    ("limiter", "governor_keyed_2_threads_same_caller", "governor keyed, 2 threads, same caller", None, False),
    ("cache", "hit", "tower-bearer token cache hit (lookup alone)", None, True),
    ("cache", "hit_2_threads_distinct_tokens", "tower-bearer token cache hit, 2 threads, distinct tokens", None, True),
    ("cache", "hit_2_threads_same_token", "tower-bearer token cache hit, 2 threads, same token", None, True),
    ("redis", "decision_round_trip", "tower-bearer Redis limiter round trip", None, True),
]


def median_ns(group, bench):
    path = CRITERION / group / bench / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def fmt(ns):
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns:.0f} ns"


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(rows, path):
    """A horizontal bar chart on a log scale: ours in blue, peers in orange, baselines grey."""
    bar_h, gap, left, width, top = 18, 6, 430, 420, 40
    height = top + len(rows) * (bar_h + gap) + 60
    lo = min(ns for _, ns, _ in rows) / 2
    hi = max(ns for _, ns, _ in rows) * 2
    scale = lambda ns: (math.log10(ns) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * width
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 110}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">Median time per request or '
        "decision (log scale; one criterion run)</text>",
    ]
    decade = 10 ** math.floor(math.log10(lo))
    while decade <= hi:
        if decade >= lo:
            x = left + scale(decade)
            out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 50}" stroke="#ddd"/>')
            out.append(f'<text x="{x:.1f}" y="{height - 34}" text-anchor="middle" fill="#555">{fmt(decade)}</text>')
        decade *= 10
    colours = {True: "#2f6fbf", False: "#e07b24", None: "#9a9a9a"}
    for i, (ours, name) in enumerate([(True, "tower-bearer"), (False, "peers and floors"), (None, "bare routers")]):
        x = 10 + i * 150
        out.append(f'<rect x="{x}" y="{height - 26}" width="12" height="12" fill="{colours[ours]}"/>')
        out.append(f'<text x="{x + 16}" y="{height - 16}">{name}</text>')
    for i, (label, ns, ours) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = max(scale(ns), 1)
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colours[ours]}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{fmt(ns)}</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", default=str(ROOT / "docs" / "benchmarks.svg"))
    args = parser.parse_args()
    print("| Case | Median | Ratio to its bare router |")
    print("|---|---|---|")
    chart = []
    for group, bench, label, base, ours in ROWS:
        ns = median_ns(group, bench)
        if ns is None:
            continue
        ratio = ""
        if base is not None:
            base_ns = median_ns(*base)
            if base_ns:
                ratio = f"{ns / base_ns:.2f}×"
        print(f"| {label} | {fmt(ns)} | {ratio} |")
        chart.append((label, ns, ours))
    floor = median_ns("router", "floor_outputs_only")
    if floor:
        # What the checks themselves cost: the full stacks over the floor of their outputs.
        print("\n| Case | Ratio to the floor |")
        print("|---|---|")
        for bench in ("minimal_checks_RS256", "tower_bearer_full_stack_RS256", "tower_bearer_full_stack_one_layer_RS256"):
            ns = median_ns("router", bench)
            if ns:
                label = next(label for g, b, label, _, _ in ROWS if (g, b) == ("router", bench))
                print(f"| {label} | {ns / floor:.2f}× |")
    if not chart:
        sys.exit("no criterion results: run `cargo bench --bench layer` first")
    svg(chart, pathlib.Path(args.svg))
    print(f"\nchart written to {args.svg}", file=sys.stderr)


if __name__ == "__main__":
    main()
