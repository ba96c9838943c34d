#!/bin/sh
# Two Pacemaker nodes on this machine, an application that procward keeps
# alive on the active node, and a failover to the standby node once
# restarts cannot help. Run as root:
#
#     scripts/cluster-demo.sh            (builds procward with cargo build --release)
#     PROCWARD=target/debug/procward scripts/cluster-demo.sh
#
# Each node is a set of Linux namespaces: a network namespace with a veth on
# a bridge, and mount, UTS and PID namespaces with a private /run, /dev/shm,
# /var/lib/pacemaker, /var/lib/corosync and /var/log/pacemaker, so two
# corosync + Pacemaker stacks (corosync two_node: 1, no fencing) run side by
# side. procward runs in each node; the resource group holds one primitive
# of procward's OCF agent with migration-threshold=1.
#
# Scenario 1 (failover): the application is killed on node1 and its restart
# script fails from then on; procward restarts it retry.max times, says
# RETRY-OVER and marks the target FAILED; the agent's monitor reports the
# failure and Pacemaker starts the application on node2, where procward
# monitors it. The timeline is printed; the last line names the node the
# resource moved to.
#
# Scenario 2 (procward dies, the application does not): on the active node
# procward is SIGKILLed while the application is healthy; the agent's
# monitor decides from the application (no failover, no second instance),
# and procward started again (as systemd would) resumes monitoring with its
# retry counters.
#
# Everything the script creates (namespaces, bridge, processes, mounts,
# files) is removed at the end, also when it fails or is interrupted.
# Exit status: 0 when both scenarios behaved, 1 otherwise, 77 when not root.

set -eu

if [ "$(id -u)" != 0 ]; then
    echo "cluster-demo: needs root (network namespaces, a bridge, Pacemaker)" >&2
    exit 77
fi
for p in corosync pacemakerd crm_mon cibadmin crm_resource crm_attribute ip unshare nsenter; do
    command -v "$p" >/dev/null 2>&1 || { echo "cluster-demo: $p is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || { echo "cluster-demo: resource-agents is missing" >&2; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PROCWARD:-}" ]; then
    PROCWARD=$here/target/release/procward
    (cd "$here" && cargo build --release --quiet) || { echo "cluster-demo: cargo build --release failed" >&2; exit 1; }
fi
PROCWARD=$(cd "$(dirname "$PROCWARD")" && pwd)/$(basename "$PROCWARD")
AGENT=$here/contrib/ocf/procward

id=$$
net=$((id % 200 + 20))          # 10.213.$net.0/24
BR=pwbr$id
WORK=$(mktemp -d /tmp/procward-cluster.XXXXXX)
chmod 755 "$WORK"
T0=

say() { printf '%s\n' "$*"; }
fail() { say "cluster-demo: FAILED: $*" >&2; dump; exit 1; }

# Where things stood, for a failure.
dump() {
    for n in 1 2; do
        [ -f "$WORK/node$n/init.pid" ] || continue
        say "--- crm_mon on node$n" >&2
        on $n crm_mon -1 --include=failcounts 2>&1 | sed 's/^/  /' >&2 || true
        say "--- procward's output on node$n" >&2
        tail -n 20 "$WORK/node$n/procward.out" 2>/dev/null | sed 's/^/  /' >&2
        say "--- procward events on node$n" >&2
        on $n "$PROCWARD" events -c "$WORK/etc/procward.toml" 2>&1 | tail -n 30 | sed 's/^/  /' >&2 || true
    done
}

cleanup() {
    set +e
    trap - EXIT INT TERM HUP PIPE
    for n in 1 2; do
        # PID 1 of a node's PID namespace: when it dies, the kernel kills
        # every process of the node (corosync, Pacemaker, procward, the
        # application); the node's mounts go with its mount namespace.
        for f in init.pid unshare.pid; do
            p=$(cat "$WORK/node$n/$f" 2>/dev/null) && kill -KILL "$p" 2>/dev/null
        done
    done
    for n in 1 2; do
        p=$(cat "$WORK/node$n/unshare.pid" 2>/dev/null) || continue
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    done
    ip netns del "pwc$id-n1" 2>/dev/null
    ip netns del "pwc$id-n2" 2>/dev/null
    ip link del "$BR" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Whoever read the output went away (an interrupted test): clean up too.
trap 'exit 141' PIPE

# Run a command inside node N (all its namespaces).
on() {
    n=$1
    shift
    # Run in the background and waited for: bash runs a trap only once the
    # foreground command is over, and a crm_mon on a busy node can take
    # long; `wait` returns at once on SIGINT/SIGTERM, so cleanup runs.
    # In a pipeline `on` runs in a subshell the signal does not reach:
    # the timeout bounds how long the main shell's trap can wait for it.
    timeout -k 2 20 nsenter -t "$(cat "$WORK/node$n/init.pid")" -a "$@" &
    wait $!
}

# Seconds since T0 (milliseconds since the epoch), for the timeline.
since() { awk -v t="$1" -v z="$T0" 'BEGIN { printf "%7.2fs", (t - z) / 1000 }'; }
now_ms() { date +%s%3N; }

# Wait (bounded) until a command succeeds.
wait_for() {
    what=$1 limit=$2
    shift 2
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le $((limit * 5)) ] || fail "no $what within ${limit}s"
        sleep 0.2
    done
}

# --- the nodes ------------------------------------------------------------

ip link add "$BR" type bridge
ip link set "$BR" up

cat > "$WORK/corosync.conf" <<EOF
totem {
    version: 2
    cluster_name: procward-demo
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
nodelist {
    node {
        name: node1
        nodeid: 1
        ring0_addr: 10.213.$net.1
    }
    node {
        name: node2
        nodeid: 2
        ring0_addr: 10.213.$net.2
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_stderr: no
    to_syslog: no
    to_logfile: yes
    logfile: /var/log/pacemaker/corosync.log
}
EOF

# The application: `sleep 99999.4242` in the node. Its start script fails
# while /run/app-broken exists (the node's private /run).
cat > "$WORK/app-start.sh" <<'EOF'
#!/bin/sh
if [ -e /run/app-broken ]; then
    echo "application cannot start on $(uname -n): /run/app-broken"
    exit 1
fi
setsid -f sleep 99999.4242 </dev/null >/dev/null 2>&1
echo "application started on $(uname -n)"
EOF
chmod 755 "$WORK/app-start.sh"

# What runs as the node's first process (under procward's reaper, which
# is PID 1 of the node's PID namespace and reaps orphans like systemd).
cat > "$WORK/node-init.sh" <<'EOF'
#!/bin/sh
set -eu
n=$1 work=$2 agent=$3 procward=$4
hostname "node$n"
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/crm /run/corosync /run/lock
chown hacluster:haclient /run/crm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount --bind "$work/node$n/pacemaker" /var/lib/pacemaker
mount --bind "$work/node$n/corosync" /var/lib/corosync
mount --bind "$work/node$n/log" /var/log/pacemaker
mount --bind "$work/node$n/etc" "$work/etc"
# The agent, as ocf:procward:procward, in this node only.
mount -t tmpfs -o mode=755 tmpfs /usr/lib/ocf/resource.d
mkdir /usr/lib/ocf/resource.d/procward
cp "$agent" /usr/lib/ocf/resource.d/procward/procward
chmod 755 /usr/lib/ocf/resource.d/procward/procward
ip link set lo up
corosync -f -c "$work/etc/corosync.conf" >/dev/null 2>&1 &
i=0
until corosync-cfgtool -s >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.1
done
PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd -f >/dev/null 2>&1 &
"$procward" run -c "$work/etc/procward.toml" >"$work/node$n/procward.out" 2>&1 &
echo $! > "$work/node$n/procward.pid.init"
while :; do sleep 3600; done
EOF
chmod 755 "$WORK/node-init.sh"
mkdir "$WORK/etc"

start_node() {
    n=$1
    ns=pwc$id-n$n
    d=$WORK/node$n
    mkdir -p "$d/etc" "$d/corosync" "$d/log" \
        "$d/pacemaker/cib" "$d/pacemaker/pengine" "$d/pacemaker/blackbox" "$d/pacemaker/cores"
    chown -R hacluster:haclient "$d/pacemaker" "$d/log"
    chmod -R 750 "$d/pacemaker"
    chmod 770 "$d/log"
    cp "$WORK/corosync.conf" "$d/etc/corosync.conf"
    cat > "$d/etc/procward.toml" <<EOF
[daemon]
interval = "500ms"
state-dir = "$d/state"
control-socket = "$d/procward.sock"

[[target]]
name = "app"
match.cmdline = '^sleep 99999\.4242$'
restart.script = "$WORK/app-start.sh"
restart.settle = "2s"
retry.max = 2
retry.window = "10m"
retry.backoff.initial = "500ms"
on-retry-over = "failover"
failover.command = ["$(command -v crm_resource)", "--fail", "--resource", "pwapp", "--node", "node$n"]
EOF
    chmod 600 "$d/etc/procward.toml"
    ip netns add "$ns"
    ip link add "pwv$id$n" type veth peer name eth0 netns "$ns"
    ip link set "pwv$id$n" master "$BR" up
    ip netns exec "$ns" ip addr add "10.213.$net.$n/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" unshare --mount --uts --pid --fork --propagation private --mount-proc \
        "$PROCWARD" reaper -- "$WORK/node-init.sh" "$n" "$WORK" "$AGENT" "$PROCWARD" \
        >"$d/init.out" 2>&1 &
    echo $! > "$d/unshare.pid"
    i=0
    until [ -s "$d/init.pid" ]; do
        c=$(cat "/proc/$!/task/$!/children" 2>/dev/null | awk '{print $1}')
        [ -n "$c" ] && echo "$c" > "$d/init.pid"
        i=$((i + 1)); [ $i -lt 100 ] || fail "node$n did not start"
        sleep 0.05
    done
}

start_node 1
start_node 2
say "work directory: $WORK"
say "node1 10.213.$net.1 and node2 10.213.$net.2 started (namespaces pwc$id-n1, pwc$id-n2, bridge $BR)"

online() { on 1 timeout 5 crm_mon -1 2>/dev/null | grep -q "Online: \[ node1 node2 \]"; }
wait_for "both nodes online with a DC" 90 online
on 1 crm_attribute --type crm_config --name stonith-enabled --update false >/dev/null
procward_up() { on "$1" "$PROCWARD" status -c "$WORK/etc/procward.toml" >/dev/null 2>&1 || [ $? -eq 4 ]; }
wait_for "procward on node1" 20 procward_up 1
wait_for "procward on node2" 20 procward_up 2

cat > "$WORK/resources.xml" <<EOF
<group id="grp-app">
  <primitive id="pwapp" class="ocf" provider="procward" type="procward">
    <instance_attributes id="pwapp-ia">
      <nvpair id="pwapp-target" name="target" value="app"/>
      <nvpair id="pwapp-config" name="config" value="$WORK/etc/procward.toml"/>
      <nvpair id="pwapp-binary" name="binary" value="$PROCWARD"/>
      <nvpair id="pwapp-stop" name="stop_timeout" value="5s"/>
    </instance_attributes>
    <meta_attributes id="pwapp-meta">
      <nvpair id="pwapp-mt" name="migration-threshold" value="1"/>
    </meta_attributes>
    <operations>
      <op id="pwapp-monitor" name="monitor" interval="2s" timeout="20s"/>
      <op id="pwapp-start" name="start" interval="0" timeout="60s"/>
      <op id="pwapp-stop-op" name="stop" interval="0" timeout="60s"/>
    </operations>
  </primitive>
</group>
EOF
on 1 cibadmin --create --scope resources --xml-file "$WORK/resources.xml"
on 1 cibadmin --create --scope constraints --xml-text \
    '<rsc_location id="prefer-node1" rsc="grp-app" node="node1" score="100"/>'

started_on() { on 1 crm_mon -1 2>/dev/null | grep -q "pwapp.*Started $1"; }
app_up() { on "$1" "$PROCWARD" status app -c "$WORK/etc/procward.toml" >/dev/null 2>&1; }
wait_for "the application started on node1" 60 started_on node1
wait_for "procward monitoring the application on node1" 20 app_up 1

# The application's pid in node N (from procward), empty when none.
app_pid() {
    on "$1" "$PROCWARD" status app --json -c "$WORK/etc/procward.toml" 2>/dev/null |
        tr -d ' \n' | sed -n 's/.*"pids":\[\([0-9][0-9]*\).*/\1/p'
}
# Instances of the application in node N (a scan of the node's /proc).
instances() {
    on "$1" sh -c 'for c in /proc/[0-9]*/cmdline; do tr "\0" " " < "$c" 2>/dev/null; echo; done' |
        grep -c '^sleep 99999\.4242 $' || true
}

crm() { on 1 crm_mon -1 --include=failcounts 2>/dev/null; }

say ""
say "== scenario 1: the application breaks on node1 for good"
say ""
crm | sed -n '/Node List/,/^ *$/p;/Active Resources/,/^ *$/p' | sed 's/^/  /'
pid=$(app_pid 1)
[ -n "$pid" ] || fail "no application pid on node1"
on 1 touch /run/app-broken
T0=$(now_ms)
on 1 kill -KILL "$pid"
say ""
say "timeline (seconds after the kill):"
say "$(since "$T0")  node1  application (pid $pid) killed; its restart script fails from now on"

# (PW2024 too: `status` answers from the daemon's memory, the journal the
# timeline reads is written a moment later.)
start_done() {
    on 2 "$PROCWARD" events --json -c "$WORK/etc/procward.toml" 2>/dev/null | grep -q '"id":"PW2024"'
}
moved() { started_on node2 && app_up 2 && start_done; }
wait_for "the resource started on node2" 100 moved
T1=$(now_ms)

# Events of node N since T0 as timeline lines.
events() {
    n=$1
    on "$n" "$PROCWARD" events --json -c "$WORK/etc/procward.toml" 2>/dev/null |
        while IFS= read -r line; do
            t=$(printf '%s' "$line" | sed -n 's/.*"time_ms":\([0-9]*\).*/\1/p')
            [ -n "$t" ] && [ "$t" -ge "$T0" ] || continue
            eid=$(printf '%s' "$line" | sed -n 's/.*"id":"\(PW[0-9]*\)".*/\1/p')
            text=$(printf '%s' "$line" | sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p')
            note=
            case "$n$eid" in
                1PW2020) note="   <- procward gives up on node1" ;;
                1PW1011) note="   <- Pacemaker stopped the resource on node1 (agent stop)" ;;
                2PW2024) note="   <- Pacemaker started the resource on node2 (agent start)" ;;
            esac
            printf '%s %s  node%s  %s %s%s\n' "$t" "$(since "$t")" "$n" "$eid" "$text" "$note"
        done
}
{ events 1; events 2; } | sort -n | cut -d' ' -f2-

say "$(since "$T1")  cluster  crm_mon: pwapp Started node2"
say ""
say "crm_mon on node1:"
on 1 crm_mon -1 --include=failcounts | sed 's/^/  /'
say "crm_mon on node2:"
on 2 crm_mon -1 --include=failcounts | sed 's/^/  /'

n1=$(instances 1)
n2=$(instances 2)
[ "$n1" = 0 ] || fail "the application still runs on node1 ($n1)"
[ "$n2" = 1 ] || fail "not exactly one application on node2 ($n2)"
for want in PW2003 PW2020 PW1011; do
    on 1 "$PROCWARD" events --json -c "$WORK/etc/procward.toml" | grep -q "\"id\":\"$want\"" ||
        fail "node1 never said $want"
done
on 2 "$PROCWARD" events --json -c "$WORK/etc/procward.toml" | grep -q '"id":"PW2024"' ||
    fail "node2 never said PW2024 (started)"
restarts=$(on 1 "$PROCWARD" events --json -c "$WORK/etc/procward.toml" | grep -c '"id":"PW2010"' || true)
[ "$restarts" = 2 ] || fail "node1 restarted $restarts times, retry.max is 2"
say "one instance, on node2; node1 restarted it $restarts times (retry.max) before RETRY-OVER"

say ""
say "== scenario 2: procward is SIGKILLed on node2 while the application is healthy"
say ""
# One restart first, so that node2 has a retry counter to keep.
pid=$(app_pid 2)
on 2 kill -KILL "$pid"
recovered() { [ -n "$(app_pid 2)" ] && [ "$(app_pid 2)" != "$pid" ] && app_up 2; }
wait_for "procward recovering the application on node2" 30 recovered
pid=$(app_pid 2)
count() {
    on 2 "$PROCWARD" status app --json -c "$WORK/etc/procward.toml" 2>/dev/null |
        tr -d ' \n' | sed -n 's/.*"restarts_in_window":\([0-9]*\).*/\1/p'
}
before=$(count)
say "node2: application restarted by procward once (restarts in the window: $before), pid $pid"
ppid=$(cat "$WORK/node2/procward.pid.init")
on 2 kill -KILL "$ppid"
fails_before=$(crm | grep -c 'pwapp.*fail-count' || true)
say "node2: procward (pid $ppid) killed; waiting 10s (5 monitor intervals)"
sleep 10
started_on node2 || fail "the resource left node2 after procward died"
[ "$(crm | grep -c 'pwapp.*fail-count' || true)" = "$fails_before" ] || fail "a new failure was counted"
[ "$(instances 1)" = 0 ] && [ "$(instances 2)" = 1 ] || fail "not exactly one application (node1 $(instances 1), node2 $(instances 2))"
say "node2: resource still Started node2, no new failure, one instance (node1: 0, node2: 1)"
on 2 sh -c "'$PROCWARD' run -c '$WORK/etc/procward.toml' >>'$WORK/node2/procward.out' 2>&1 &"
wait_for "procward back on node2" 20 app_up 2
after=$(count)
[ "$(app_pid 2)" = "$pid" ] || fail "procward did not resume with the same process"
[ "$after" = "$before" ] || fail "restarts in the window were $before, now $after"
say "node2: procward started again: monitoring pid $pid, restarts in the window still $after"
[ "$(instances 1)" = 0 ] && [ "$(instances 2)" = 1 ] || fail "not exactly one application"

say ""
say "crm_mon on node1 at the end:"
on 1 crm_mon -1 --include=failcounts | sed 's/^/  /'
say "crm_mon on node2 at the end:"
on 2 crm_mon -1 --include=failcounts | sed 's/^/  /'
say ""
say "moved to: node2"
