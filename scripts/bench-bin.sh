#!/usr/bin/env bash
# Builds the bench target NAME (release; the features `cargo bench` builds, plus BENCH_FEATURES
# if set) without running it and prints the path of its executable, for scripts that run a
# bench binary themselves.
#
# Usage: [BENCH_FEATURES=metrics] scripts/bench-bin.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/bench-bin.sh NAME}"
cargo bench --bench "$name" ${BENCH_FEATURES:+--features "$BENCH_FEATURES"} --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
        print(m["executable"])' "$name"
