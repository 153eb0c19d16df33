#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, default 30, with libFuzzer
# through cargo-fuzz on the nightly toolchain. Installs cargo-fuzz when it is missing; fails
# when the nightly toolchain is missing (cargo-fuzz's sanitizer flags need it).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Inputs: fuzz/seeds/TARGET (committed, read only) and fuzz/corpus/TARGET (what the runs
# grow; not committed). A crash leaves its input in fuzz/artifacts/TARGET and fails the
# script. Extra libFuzzer flags can be given in FUZZ_ARGS, e.g. FUZZ_ARGS="-jobs=2 -workers=2".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(credential token scope jwks)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "--- installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

start=$SECONDS
echo "--- cargo fuzz build"
cargo +nightly fuzz build
echo "fuzz: built in $((SECONDS - start)) s"

for t in "${targets[@]}"; do
  echo "--- fuzz $t for ${seconds} s"
  mkdir -p "corpus/$t"
  # shellcheck disable=SC2086
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
    -max_len=16384 -print_final_stats=1 ${FUZZ_ARGS:-}
done
echo "fuzz: ${#targets[@]} target(s) in $((SECONDS - start)) s, no crash"
