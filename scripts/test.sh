#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then runs them.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The reference-server test replays the curl lines the example prints.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The Redis rate-limit tests start their own redis-server on a free loopback port.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (install them, or run as root on Debian)" >&2
    exit 1
  fi
fi

exec cargo test --all-features "$@"
