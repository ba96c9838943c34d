#!/usr/bin/env bash
# The side-by-side benchmark: procward, monit (pidfile and `matching`) and a
# ps-per-cycle shell loop, each watching N idle processes. Writes
# BENCHMARKS.md. Options: --install-monit (apt-get install monit when it is
# missing), and anything else goes to the harness (--n 100,1000,10000
# --steady SECONDS --samples N --out FILE, --only procward,procward-regex,...
# to run some rows only while working on them, --damon-off to switch the
# kernel's DAMON monitors off during the run and on again after it;
# --only delivery runs the RELP delivery rows alone, --delivery-events N
# sets their size, 100,000 by default). The .deb is built first
# (scripts/package.sh) for its size.
# BENCH_SAMPLES=DIR prints every latency sample and keeps procward's
# stderr in DIR/procward.log.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
  if [ "$a" = "--install-monit" ]; then
    if ! command -v monit >/dev/null; then
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends monit
    fi
  else
    args+=("$a")
  fi
done
command -v monit >/dev/null || echo "scripts/bench.sh: monit is not installed: its rows are skipped (use --install-monit)" >&2

cargo build --release --bin procward --example bench
# The package of the same build, for its size (scripts/package.sh).
deb=()
if scripts/package.sh >/dev/null; then
  deb=(--deb "$(ls -t target/debian/procward_*.deb | head -1)")
else
  echo "scripts/bench.sh: the package could not be built: its size is not reported" >&2
fi
exec target/release/examples/bench --procward target/release/procward "${deb[@]}" "${args[@]}"
