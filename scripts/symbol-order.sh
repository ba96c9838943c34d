#!/bin/bash
# Regenerate link/symbol-order.txt: the functions the daemon runs, which the
# linker (rust-lld, --symbol-ordering-file, see build.rs) puts together at
# the start of .text.
#
# Why: the kernel maps an executable's page-cache pages in whole (large)
# folios, so every function the daemon touches keeps its whole neighbourhood
# resident. With the functions it runs scattered over the 4.3 MB of code, 3.6
# MiB of the text was resident; together, far less (BENCHMARKS.md, "Where the
# memory goes"). No crate does this; lld does the ordering, this script only
# lists what the daemon runs.
#
# How: the daemon runs under valgrind (callgrind) in a scratch directory, on
# a build whose rustix uses its libc backend (rustix's own vDSO set-up does not
# run under valgrind); every function it executed is then matched, by its
# path without the mangling hash, to the symbols of the release binary.
# Tier 1 is a plain workload (pidfile targets: start, status, a kill and its
# restart, a reload); tier 2 what a broader configuration adds (a syslog sink,
# the metrics endpoint, resource checks, a regex matcher). Tier 1 comes first.
#
# Run it after a change of dependencies or of the toolchain (the symbols'
# hashes change with them; `scripts/bench.sh` says how many listed names the
# binary still has). Needs valgrind. Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "symbol-order.sh: needs valgrind" >&2; exit 1; }

OUT=link/symbol-order.txt
PROF_TARGET=${PROF_TARGET:-target/symbol-order}
PORT=${PORT:-19599}  # the metrics endpoint of tier 2
cargo build --release --bin procward
BIN=$PWD/target/release/procward
CARGO_TARGET_DIR=$PROF_TARGET RUSTFLAGS="--cfg rustix_use_libc" \
    PROCWARD_NO_SYMBOL_ORDER=1 cargo build --release --bin procward
PBIN=$PWD/$PROF_TARGET/release/procward

WORK=$(mktemp -d /tmp/procward-order.XXXXXX)
chmod 700 "$WORK"
SLEEPS=()
VP=
cleanup() {
    local rc=$?
    for p in $VP "${SLEEPS[@]}" $(cat "$WORK"/t*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    # Kept for a look when something failed.
    [ "$rc" = 0 ] && rm -rf "$WORK"
}
trap cleanup EXIT

# One daemon run under callgrind: config text in $1, extra client steps in
# the function named $2; the executed functions of the binary go to $3.
profile() {
    local cfg=$1 steps=$2 out=$3
    rm -rf "$WORK/state"
    printf '%s' "$cfg" >"$WORK/procward.toml"
    chmod 600 "$WORK/procward.toml"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.out" \
        "$PBIN" run --quiet -c "$WORK/procward.toml" >/dev/null 2>"$WORK/valgrind.log" &
    VP=$!
    wait_for PW2001 "$N" 600
    sleep 2
    "$BIN" status -c "$WORK/procward.toml" >/dev/null || true
    "$BIN" status --json -c "$WORK/procward.toml" >/dev/null || true
    kill -9 "$(cat "$WORK/t0.pid")"
    wait_for PW2015 1 300
    "$BIN" reload -c "$WORK/procward.toml" >/dev/null
    $steps
    sleep 2
    kill "$VP"
    wait "$VP" || true
    VP=
    # fn=(id) name lines of the binary's object (ob=), each name once.
    gawk -v bin="$PBIN" '
        match($0, /^c?ob=\(([0-9]+)\)( (.*))?$/, m) {
            if (m[3] != "") ob[m[1]] = m[3]
            if (substr($0, 1, 3) == "ob=") cur = ob[m[1]]
        }
        match($0, /^c?fn=\(([0-9]+)\)( (.*))?$/, m) {
            if (m[3] != "") fn[m[1]] = m[3]
            if (substr($0, 1, 3) == "fn=" && cur == bin && !seen[fn[m[1]]]++) print fn[m[1]]
        }' "$WORK/cg.out" >"$out"
}

# Wait for $2 events $1 in the journal, at most $3 tenths of a second.
wait_for() {
    local n=0
    for _ in $(seq 1 "$3"); do
        n=$(grep -c "\"id\":\"$1\"" "$WORK/state/events.jsonl" 2>/dev/null || true)
        [ "${n:-0}" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "symbol-order.sh: $1 not seen ($n of $2); see $WORK/valgrind.log" >&2
    exit 1
}

# The restart: a new process for the target, named in its pidfile.
printf '#!/bin/sh\nsleep 100000.0 </dev/null >/dev/null 2>&1 &\necho $! >"%s/$PROCWARD_TARGET.pid"\n' "$WORK" >"$WORK/restart.sh"
chmod 755 "$WORK/restart.sh"
N=20
base="[daemon]
interval = \"1s\"
state-dir = \"$WORK/state\"
control-socket = \"$WORK/pw.sock\"
"
targets=""
for i in $(seq 0 $((N - 1))); do
    sleep 100000.$i &
    SLEEPS+=($!)
    echo $! >"$WORK/t$i.pid"
    targets+="[[target]]
name = \"t$i\"
match.pidfile = \"$WORK/t$i.pid\"
restart.script = \"$WORK/restart.sh\"
restart.settle = \"1s\"
"
done
none() { :; }
profile "$base$targets" none "$WORK/tier1"

broad="${base}metrics-listen = \"127.0.0.1:$PORT\"
[[sink.syslog]]
name = \"udp\"
transport = \"udp\"
address = \"127.0.0.1:9\"
[[target]]
name = \"regex\"
match.cmdline = '^sleep +100000\\.1\$'
[[target.check]]
name = \"mem\"
kind = \"memory\"
above = \"1GiB\"
interval = \"1s\"
[[target.check]]
name = \"cpu\"
kind = \"cpu\"
scope = \"tree\"
above = 90
interval = \"1s\"
"
N=21

events() {
    "$BIN" events -c "$WORK/procward.toml" >/dev/null || true
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
    cat <&3 >/dev/null
    exec 3<&-
    sleep 2
}
profile "$broad$targets" events "$WORK/tier2"

# Match each executed function to the release binary's symbols by its path
# without the hash (generic instances: every instance of the path).
nm "$BIN" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$WORK/syms"
# Tier 1, then rustix (it runs in the daemon through its linux_raw backend,
# which the profiled build replaced: all of it), then tier 2.
match() {
    gawk '
        function key(s) { return gensub(/17h[0-9a-f]{16}E$/, "", 1, s) }
        FILENAME == ARGV[1] { by[key($0)] = by[key($0)] " " $0; next }
        { k = key($0); if (!(k in by)) next
          n = split(by[k], s, " ")
          for (i = 1; i <= n; i++) print s[i] }
        ' "$WORK/syms" "$1"
}
{
    echo "# The functions the daemon runs, first (scripts/symbol-order.sh; used by build.rs)."
    match "$WORK/tier1"
    grep -E 'rustix|linux_raw_sys' "$WORK/syms" || true
    match "$WORK/tier2"
} | awk '!seen[$0]++' >"$OUT.new"
mv "$OUT.new" "$OUT"
echo "$OUT: $(grep -vc '^#' "$OUT") symbols (tier 1: $(wc -l <"$WORK/tier1") functions run, tier 2: $(wc -l <"$WORK/tier2"))"
