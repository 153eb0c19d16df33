#!/usr/bin/env bash
# Instructions per request for each case of benches/instructions.rs, counted by callgrind
# (deterministic for one build and input, whatever else the machine does; compare two builds
# with it), and the code the measured requests ran: distinct 64-byte lines of instructions
# (what a request needs in the instruction cache; a server's requests find it cooled by the
# kernel's network path). Installs valgrind if it is missing (Debian, root).
#
# Usage: [BENCH_FEATURES=metrics] scripts/instructions.sh [CASE...]   (default: bare floor minimal hit hit_realm layers one_layer revocation idle miss_hs256 decode_hs256)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
  else
    echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1
  fi
fi
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(bare floor minimal hit hit_realm layers one_layer revocation idle miss_hs256 decode_hs256)
bin=$(scripts/bench-bin.sh instructions)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for case in "${cases[@]}"; do
  n=2000
  case $case in *hs256) n=500 ;; esac
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect='instructions::measured*' \
    --dump-instr=yes --compress-pos=no \
    --callgrind-out-file="$out/$case.out" "$bin" "$case" "$n" >/dev/null 2>"$out/$case.log"
  total=$(grep -o 'refs: *[0-9,]*' "$out/$case.log" | tr -dc 0-9)
  # With uncompressed positions every cost line starts with its instruction's address.
  lines=$(grep -o '^0x[0-9a-f]*' "$out/$case.out" \
    | python3 -c 'import sys; print(len({int(a, 16) >> 6 for a in sys.stdin.read().split()}))')
  printf '%-12s %8d instructions per request, %5d code lines (64 B)\n' "$case" $(( total / n )) "$lines"
done
