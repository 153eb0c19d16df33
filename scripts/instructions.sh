#!/usr/bin/env bash
# Instructions per request for each case of benches/instructions.rs, counted by callgrind
# (deterministic for one build and input, whatever else the machine does; compare two builds
# with it). Installs valgrind if it is missing (Debian, root).
#
# Usage: scripts/instructions.sh [CASE...]   (default: bare floor hit layers one_layer revocation idle miss_hs256 decode_hs256)
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
[ ${#cases[@]} -gt 0 ] || cases=(bare floor hit layers one_layer revocation idle miss_hs256 decode_hs256)
bin=$(scripts/bench-bin.sh instructions)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for case in "${cases[@]}"; do
  n=2000
  case $case in *hs256) n=500 ;; esac
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect='instructions::measured*' \
    --callgrind-out-file="$out/$case.out" "$bin" "$case" "$n" >/dev/null 2>"$out/$case.log"
  total=$(grep -o 'refs: *[0-9,]*' "$out/$case.log" | tr -dc 0-9)
  printf '%-12s %8d instructions per request\n' "$case" $(( total / n ))
done
