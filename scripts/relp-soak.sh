#!/usr/bin/env bash
# The full-size RELP soak of issue 28: 100,000 test events into a real
# rsyslogd (imrelp, Direct queues) while the receiver is killed 50 times
# (SIGTERM and SIGKILL alternating, restarted after random pauses) and
# procward is SIGKILLed 3 times and restarted. Every journal event must
# reach the receiver's file; duplicates stay within window x breaks.
# CI runs the same test at 20,000 events, 10 and 1 kills.
# Usage: scripts/relp-soak.sh [EVENTS [RECEIVER_KILLS [PROCWARD_KILLS]]]
set -euo pipefail
cd "$(dirname "$0")/.."
export PROCWARD_SOAK_EVENTS="${1:-100000}"
export PROCWARD_SOAK_KILLS="${2:-50}"
export PROCWARD_SOAK_DAEMON_KILLS="${3:-3}"
cargo test --test relp relp_loses_nothing_over_receiver_kills_and_procward_kills -- --nocapture 2>&1 |
  grep -E '^soak:|test result|panicked|never received|duplicates over'
