#!/usr/bin/env bash
# A single-node Slurm on the loopback address, for the plugin's scheduler tests.
#
#   bash .ci/slurm.sh start   install (Debian, as root) and start munged, slurmctld and
#                             slurmd; wait until the node is idle. Idempotent. Exits
#                             non-zero, saying why, where Slurm cannot start here.
#   bash .ci/slurm.sh conf    print the path of the slurm.conf (for SLURM_CONF)
#   bash .ci/slurm.sh why     print why the last start failed
#   bash .ci/slurm.sh status  say whether it runs, and show the node
#   bash .ci/slurm.sh stop    cancel every job, then stop the daemons this script started
#                             (by their pids, never by name). Idempotent.
#
# Everything lives in one state folder (PARSLFLOW_SLURM_STATE, by default
# ${TMPDIR:-/tmp}/parslflow-slurm): slurm.conf, the daemons' logs, spool and state, and
# `pids`, which lists what this script started. Slurm's client commands find the
# cluster through SLURM_CONF. No systemd, no cgroups: processes are tracked by the
# process tree (proctrack/linuxproc), and no accounting database is kept.
set -uo pipefail

STATE="${PARSLFLOW_SLURM_STATE:-${TMPDIR:-/tmp}/parslflow-slurm}"
CONF="$STATE/slurm.conf"
PIDS="$STATE/pids"
MUNGE_SOCKET=/run/munge/munge.socket.2
CTLD_PORT="${PARSLFLOW_SLURMCTLD_PORT:-16817}"
SLURMD_PORT="${PARSLFLOW_SLURMD_PORT:-16818}"
PACKAGES=(slurmctld slurmd slurm-client munge)

STARTING=0

say() { echo "slurm.sh: $*" >&2; }
# give up, saying why; a failed start stops what it had started
fail() {
    say "$*"
    if [ "$STARTING" = 1 ]; then
        echo "$*" >"$STATE/why"
        stop >/dev/null 2>&1
    fi
    exit 1
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# the pid this script recorded for a daemon, if that daemon still runs under it (a pid
# left from an earlier machine session may name another process by now)
our_pid() {
    local pid
    pid=$(awk -v name="$1" '$1 == name { print $2 }' "$PIDS" 2>/dev/null | tail -n 1)
    if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$1"; then
        echo "$pid"
    fi
}

record() { echo "$1 $2" >>"$PIDS"; }

# Slurm's clients wait 10 s for a controller that does not answer: at most 5 s here
node_state() { SLURM_CONF="$CONF" timeout 5 sinfo -h -n localhost -o %t 2>/dev/null | head -n 1; }

install_packages() {
    local missing=0 binary
    for binary in slurmctld slurmd sinfo sbatch squeue scancel munged munge; do
        command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/sbin/$binary" ] || missing=1
    done
    [ "$missing" = 0 ] && return 0
    [ "$(id -u)" = 0 ] || fail "Slurm is not installed and this is not root: cannot apt-get install ${PACKAGES[*]}"
    command -v apt-get >/dev/null 2>&1 || fail "Slurm is not installed and there is no apt-get to install ${PACKAGES[*]}"
    say "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } \
        >"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; fail "apt-get install ${PACKAGES[*]} failed"; }
}

munge_works() { munge -n --socket="$MUNGE_SOCKET" 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        return 0  # a munged runs already (ours from an earlier start, or the system's)
    fi
    id munge >/dev/null 2>&1 || fail "no munge user: the munge package did not install properly"
    [ -f /etc/munge/munge.key ] || fail "no /etc/munge/munge.key: the munge package did not install properly"
    install -d -o munge -g munge -m 0755 /run/munge
    # munged refuses to run as root; it daemonizes and writes its pid file
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/parslflow-munged.pid \
        >"$STATE/munged.out" 2>&1 || { cat "$STATE/munged.out" >&2; fail "munged did not start"; }
    local pid="" i
    for i in $(seq 100); do
        pid=$(cat /run/munge/parslflow-munged.pid 2>/dev/null)
        if alive "$pid" && munge_works; then
            record munged "$pid"
            return 0
        fi
        sleep 0.1
    done
    fail "munged did not answer on $MUNGE_SOCKET"
}

write_conf() {
    local cpus
    cpus=$(nproc)
    mkdir -p "$STATE/ctld" "$STATE/slurmd"
    cat >"$CONF" <<EOF
# written by .ci/slurm.sh: one node, this machine, on the loopback address
ClusterName=parslflow
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# no systemd, no cgroups, no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
# schedule at once (else every job waits 3 s), share the node between jobs
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# a cancelled job's processes get 2 s between SIGTERM and SIGKILL (default 30 s)
KillWait=2
MinJobAge=5
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=60 State=UP
EOF
}

start_daemon() {  # name, pid file, command...
    local name=$1 pidfile=$2 pid="" i
    shift 2
    if pid=$(our_pid "$name") && [ -n "$pid" ]; then
        return 0
    fi
    rm -f "$pidfile"
    "$@" >"$STATE/$name.out" 2>&1 || { cat "$STATE/$name.out" "$STATE/$name.log" >&2 2>/dev/null; fail "$name did not start"; }
    for i in $(seq 100); do
        pid=$(cat "$pidfile" 2>/dev/null)
        if alive "$pid"; then
            record "$name" "$pid"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$STATE/$name.log" >&2 2>/dev/null
    fail "$name did not start (no pid in $pidfile)"
}

start() {
    mkdir -p "$STATE"
    if [ -f "$CONF" ] && [ -n "$(our_pid slurmctld)" ] && [ -n "$(our_pid slurmd)" ] \
        && [ "$(node_state)" = idle ]; then
        say "already running ($CONF)"
        return 0
    fi
    STARTING=1
    rm -f "$STATE/why"
    install_packages
    start_munge
    write_conf
    rm -f "$STATE/slurmctld.log" "$STATE/slurmd.log"
    # -c: a clean state, no jobs or nodes remembered from an earlier run
    start_daemon slurmctld "$STATE/slurmctld.pid" slurmctld -c -f "$CONF"
    start_daemon slurmd "$STATE/slurmd.pid" slurmd -N localhost -f "$CONF"
    local state="" name deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        for name in slurmctld slurmd; do
            if [ -z "$(our_pid "$name")" ]; then
                tail -n 20 "$STATE/$name.log" >&2 2>/dev/null
                fail "$name exited after it started (its log: $STATE/$name.log)"
            fi
        done
        state=$(node_state)
        case "$state" in
            idle) say "running: node localhost idle ($CONF)"; return 0 ;;
            drain* | down* | fail*)
                SLURM_CONF="$CONF" timeout 5 scontrol update nodename=localhost state=resume \
                    >/dev/null 2>&1 ;;
        esac
        sleep 0.1
    done
    tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 2>/dev/null
    fail "the node did not become idle within 30 s (state: ${state:-none})"
}

wait_gone() {  # pid, seconds
    local i
    for i in $(seq $(($2 * 10))); do
        alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

stop_daemons() {  # names...: SIGTERM (SIGKILL after 10 s) to those this script started
    local name pid pids=()
    for name in "$@"; do
        pid=$(our_pid "$name")
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && pids+=("$name:$pid")
    done
    for name in "${pids[@]}"; do
        pid=${name#*:}
        if ! wait_gone "$pid" 10; then
            say "${name%%:*} ($pid) did not stop on SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            wait_gone "$pid" 5
        fi
    done
}

stop() {
    [ -d "$STATE" ] || return 0
    if [ -n "$(our_pid slurmctld)" ]; then
        SLURM_CONF="$CONF" timeout 10 scancel --quiet --user="$(id -un)" 2>/dev/null
        local deadline=$((SECONDS + 30))
        while [ "$SECONDS" -lt "$deadline" ]; do
            [ -z "$(SLURM_CONF="$CONF" timeout 5 squeue -h 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    # the two Slurm daemons together, then munged, which they use until they exit
    stop_daemons slurmd slurmctld
    stop_daemons munged
    rm -f "$PIDS"
    say "stopped"
}

status() {
    local name
    for name in munged slurmctld slurmd; do
        echo "$name: $(our_pid "$name")"
    done
    [ -f "$CONF" ] && SLURM_CONF="$CONF" sinfo 2>&1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    conf) echo "$CONF" ;;
    why) cat "$STATE/why" 2>/dev/null || echo "no failed start recorded in $STATE" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|conf|why|status" >&2; exit 2 ;;
esac
