#!/usr/bin/env bash
# Run the whole procward test suite. Installs the Debian packages the tests
# need when they are missing (root, or sudo), then runs `cargo test`.
# Extra arguments go to cargo test (e.g. scripts/test.sh --test daemon).
set -euo pipefail
cd "$(dirname "$0")/.."

# Real receivers the integration tests start on loopback.
PKGS=(rsyslog rsyslog-relp rsyslog-gnutls rsyslog-openssl openssl snmptrapd snmp smitools snmptt
      corosync pacemaker pacemaker-cli-utils resource-agents libxml2-utils
      prometheus
      postgresql zabbix-server-pgsql zabbix-frontend-php php-cli php-pgsql zabbix-agent)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The tests start their own daemons on loopback: no package starts its
  # service (prometheus, postgresql, zabbix, apache...) while installed.
  policy=/usr/sbin/policy-rc.d
  ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    ours=1
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$ours" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "scripts/test.sh: cargo is required (https://rustup.rs)" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (the last binary alone may have none).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' \
  FS='[ ;]+' "$log"
exit "$rc"
