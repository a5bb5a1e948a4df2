#!/usr/bin/env bash
# single-node.sh -- a single-node Slurm 22.05 cluster with accounting on THIS
# machine, for baton's CI, tests and developers (Debian 12, run as root).
#
# Usage: deploy/slurm/single-node.sh [up|down|status|ctld-stop|ctld-start]
#
#   up          (default) install the missing Debian packages, write the
#               configs, start MariaDB, munged, slurmdbd, slurmctld and slurmd
#               (each only if it is not already running), wait until the node
#               is idle, sacct answers and a trivial srun and sbatch job both
#               complete, then print a one-line summary on stdout.
#   down        stop slurmd, slurmctld and slurmdbd, and munged and MariaDB if
#               `up` started them (a MariaDB or munged that was already running
#               is left alone).
#   status      print what runs; exit 0 if all five daemons run, 3 otherwise.
#   ctld-stop   stop only slurmctld (submissions then fail or wait).
#   ctld-start  start slurmctld again and wait until it answers.
#
# There is no systemd: daemons are started directly; pid files are in /run,
# Slurm's logs in /var/log/slurm.  The configs are rendered from the templates
# next to this script (slurm.conf.in, slurmdbd.conf.in, mariadb.cnf.in).
# Running `up` twice is fine: it reuses what runs and installs only what is
# missing; a daemon whose config changed is restarted.  Progress goes to
# stderr, the summary to stdout.  Works without a terminal (CI=true).
#
# Environment: BATON_SLURM_TIMEOUT  seconds to wait for each daemon (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER=baton
PARTITION=debug
HOST="$(hostname -s)"
ADDR=127.0.0.1                  # one node: everything talks over loopback
ETC=/etc/slurm
LOGDIR=/var/log/slurm
RUNDIR=/run/baton-slurm         # lock file and markers of daemons `up` started
INSTALL_LOG=/var/log/baton-slurm-install.log
MARIADB_LOG=/var/log/mysql/error.log
MUNGE_LOG=/var/log/munge/munged.log
DB_PASS_FILE=$ETC/baton-dbpass  # slurmdbd's MariaDB password, made once
TIMEOUT=${BATON_SLURM_TIMEOUT:-60}
PACKAGES=(munge mariadb-server mariadb-client slurmdbd slurmctld slurmd slurm-client procps)
# Scheduler: try pending jobs right after every event (submit, end, release)
# instead of batching them, run backfill every second and the full main loop
# every 5 s (it is what starts a requeued job once its BeginTime has passed).
SCHED_PARAMS="batch_sched_delay=0,sched_min_interval=0,bf_interval=1,sched_interval=5"

T0=$SECONDS

# ---------------------------------------------------------------- helpers

log() { printf '[single-node] %s\n' "$*" >&2; }

# die MESSAGE [LOGFILE]: fail loudly, with the tail of the relevant log.
die() {
    printf '[single-node] ERROR: %s\n' "$1" >&2
    if [[ -n ${2:-} && -r ${2:-} ]]; then
        printf -- '----- last 40 lines of %s -----\n' "$2" >&2
        tail -n 40 "$2" >&2
        printf -- '-----\n' >&2
    fi
    exit 1
}

# wait_for SECONDS WHAT LOGFILE COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local secs=$1 what=$2 logf=$3
    shift 3
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "$what did not come up within ${secs}s" "$logf"
        sleep 0.5
    done
}

# alive PID: the process exists and is not a zombie (PID 1 in a container may
# be slow to reap the daemons' exited processes).
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ -n $st && $st != Z* ]]
}

# live_pid NAME: the pid of the oldest live process with this exact name.
live_pid() {
    local pid
    pid=$(ps -C "$1" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1; exit}')
    [[ -n $pid ]] && echo "$pid"
}

# pid_of NAME PIDFILE: print the pid of the running daemon NAME (from its pid
# file, else the oldest live process of that name); fail if it does not run.
pid_of() {
    local name=$1 pidfile=$2 pid=""
    if [[ -r $pidfile ]]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [[ -n $pid && $(ps -o comm= -p "$pid" 2>/dev/null) == "$name" ]] && alive "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    live_pid "$name"
}

# wait_gone SECONDS PID...: wait until none of the processes is alive.
wait_gone() {
    local end=$((SECONDS + $1)) pid
    shift
    for pid in "$@"; do
        while alive "$pid"; do
            ((SECONDS < end)) || return 1
            sleep 0.2
        done
    done
}

# stop_daemon NAME PIDFILE: SIGTERM the daemon, wait for it to exit.
stop_daemon() {
    local name=$1 pidfile=$2 pid
    if ! pid=$(pid_of "$name" "$pidfile"); then
        log "$name is not running"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 30 "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone 5 "$pid" || die "could not stop $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

# daemon COMMAND...: start a daemon without our stdin or lock file (fd 9):
# a daemon that inherited the lock would hold it for as long as it runs.
daemon() { "$@" </dev/null 9>&-; }

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
mariadb_ok() { mysqladmin --no-defaults --protocol=socket -uroot status >/dev/null 2>&1; }
dbd_ok() { timeout 15 sacctmgr -n -P list cluster format=cluster </dev/null >/dev/null 2>&1; }
ctld_ok() { timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'; }

# The node's state, e.g. "idle", "mixed", "down*" ("*": not responding).
node_state() { timeout 15 sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n 1; }

node_ready() {
    case "$(node_state)" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
}

# ---------------------------------------------------------------- install

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return 0
    fi
    log "installing ${missing[*]} (apt output in $INSTALL_LOG)"
    # Keep the packages' maintainer scripts from starting daemons: there is no
    # systemd, and we start them ourselves below.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    } </dev/null >>"$INSTALL_LOG" 2>&1 || rc=$?
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get failed to install ${missing[*]}" "$INSTALL_LOG"
}

# ---------------------------------------------------------------- configs

# render TEMPLATE DEST MODE OWNER: fill in the template; succeed only if DEST
# changed (so that the caller knows to restart the daemon that reads it).
render() {
    local template=$HERE/$1 dest=$2 mode=$3 owner=$4 tmp
    tmp=$(mktemp)
    sed -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@PARTITION@|$PARTITION|g" \
        -e "s|@HOST@|$HOST|g" \
        -e "s|@ADDR@|$ADDR|g" \
        -e "s|@NODE_HW@|$NODE_HW|g" \
        -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" \
        -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@SCHED_PARAMS@|$SCHED_PARAMS|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" \
        "$template" >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        return 1
    fi
    install -m "$mode" -o "$owner" -g "$owner" "$tmp" "$dest"
    rm -f "$tmp"
    log "wrote $dest"
    return 0
}

# Read this machine's CPUs and memory (at every `up`: the machine may change).
detect_hardware() {
    local line field cpus=""
    NODE_HW=""
    # slurmd -C prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1
    # CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24045".
    line=$(slurmd -C 2>/dev/null | head -n 1 || true)
    for field in $line; do
        case $field in
            CPUs=* | Boards=* | SocketsPerBoard=* | CoresPerSocket=* | ThreadsPerCore=*)
                NODE_HW+="${NODE_HW:+ }$field" ;;
        esac
        [[ $field == CPUs=* ]] && cpus=${field#CPUs=}
    done
    if [[ -z $cpus ]]; then
        cpus=$(nproc)
        NODE_HW="CPUs=$cpus"
    fi
    local total_mb
    total_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    # A bit under the real memory (5%, at least 256 MB), so that slurmd never
    # finds less than configured and drains the node.
    local margin=$((total_mb / 20))
    ((margin < 256)) && margin=256
    REAL_MEMORY=$((total_mb - margin))
    DEF_MEM_PER_CPU=$((REAL_MEMORY / cpus))
    NODE_CPUS=$cpus
}

# Write every config; set CHANGED_SLURM / CHANGED_DBD for the daemons to restart.
write_configs() {
    install -d -m 755 "$ETC" "$RUNDIR"
    install -d -o slurm -g slurm -m 755 "$LOGDIR" /var/lib/slurm /var/lib/slurm/slurmctld
    install -d -m 755 /var/lib/slurm/slurmd
    if [[ ! -s $DB_PASS_FILE ]]; then
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$DB_PASS_FILE")
    fi
    DB_PASS=$(<"$DB_PASS_FILE")
    detect_hardware
    CHANGED_SLURM=0 CHANGED_DBD=0
    render slurm.conf.in "$ETC/slurm.conf" 644 root && CHANGED_SLURM=1
    # slurmdbd refuses a config readable by others (it holds the password).
    render slurmdbd.conf.in "$ETC/slurmdbd.conf" 600 slurm && CHANGED_DBD=1
    # Takes effect the next time MariaDB starts.
    render mariadb.cnf.in /etc/mysql/mariadb.conf.d/60-baton-slurm.cnf 644 root || true
}

# ---------------------------------------------------------------- daemons

start_mariadb() {
    if mariadb_ok; then
        log "MariaDB already running"
    elif live_pid mysqld_safe >/dev/null || live_pid mariadbd >/dev/null; then
        # Started (e.g. by an earlier `up` that gave up) but not ready yet: a
        # second server would fight the first one for the data directory.
        log "MariaDB is starting: waiting for it"
        wait_for "$TIMEOUT" "MariaDB" "$MARIADB_LOG" mariadb_ok
    else
        log "starting MariaDB"
        install -d -o mysql -g mysql -m 755 /run/mysqld /var/log/mysql
        # mysqld_safe restarts mariadbd if it crashes; setsid detaches it.
        # Debian's mysqld_safe logs to syslog, which does not run here.
        setsid mysqld_safe --skip-syslog --log-error="$MARIADB_LOG" \
            </dev/null >>"$LOGDIR/mysqld_safe.out" 2>&1 9>&- &
        touch "$RUNDIR/started-mariadb"
        wait_for "$TIMEOUT" "MariaDB" "$MARIADB_LOG" mariadb_ok
    fi
    # slurmdbd's database and user (idempotent; the password may be new).
    mysql --no-defaults --protocol=socket -uroot </dev/null >/dev/null 2>>"$LOGDIR/mysql-setup.err" -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
        FLUSH PRIVILEGES;" ||
        die "could not create slurmdbd's database and user in MariaDB" "$LOGDIR/mysql-setup.err"
}

start_munge() {
    install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating the munge key"
        mungekey -c -k /etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    if munge_ok; then
        log "munged already running"
        return 0
    fi
    if pid_of munged /run/munge/munged.pid >/dev/null; then
        log "munged is starting: waiting for it"
        wait_for 15 "munged" "$MUNGE_LOG" munge_ok
        return 0
    fi
    log "starting munged"
    daemon runuser -u munge -- /usr/sbin/munged ||
        die "munged failed to start" "$MUNGE_LOG"
    touch "$RUNDIR/started-munged"
    wait_for 15 "munged" "$MUNGE_LOG" munge_ok
}

start_slurmdbd() {
    if ((CHANGED_DBD)) && pid_of slurmdbd /run/slurmdbd.pid >/dev/null; then
        log "slurmdbd.conf changed: restarting slurmdbd"
        stop_daemon slurmdbd /run/slurmdbd.pid
    fi
    if pid_of slurmdbd /run/slurmdbd.pid >/dev/null; then
        log "slurmdbd already running"
    else
        log "starting slurmdbd"
        daemon slurmdbd || die "slurmdbd failed to start" "$LOGDIR/slurmdbd.log"
    fi
    wait_for "$TIMEOUT" "slurmdbd" "$LOGDIR/slurmdbd.log" dbd_ok
    # The cluster, and root's association so that jobs submitted as root are
    # accounted (no enforcement: AccountingStorageEnforce is not set).
    if ! sacctmgr -n -P list cluster format=cluster </dev/null | grep -qx "$CLUSTER"; then
        log "adding cluster $CLUSTER to the accounting database"
        sacctmgr -i add cluster "$CLUSTER" </dev/null >/dev/null ||
            die "sacctmgr add cluster $CLUSTER failed" "$LOGDIR/slurmdbd.log"
    fi
    if [[ -z $(sacctmgr -n -P list association cluster="$CLUSTER" user=root format=user </dev/null) ]]; then
        log "adding user root to account root"
        sacctmgr -i add user root account=root cluster="$CLUSTER" </dev/null >/dev/null ||
            die "sacctmgr add user root failed" "$LOGDIR/slurmdbd.log"
    fi
}

start_slurmctld() {
    if pid_of slurmctld /run/slurmctld.pid >/dev/null; then
        log "slurmctld already running"
    else
        log "starting slurmctld"
        daemon slurmctld || die "slurmctld failed to start" "$LOGDIR/slurmctld.log"
    fi
    wait_for "$TIMEOUT" "slurmctld" "$LOGDIR/slurmctld.log" ctld_ok
}

start_slurmd() {
    if pid_of slurmd /run/slurmd.pid >/dev/null; then
        log "slurmd already running"
    else
        log "starting slurmd"
        daemon slurmd || die "slurmd failed to start" "$LOGDIR/slurmd.log"
    fi
    # Wait for the node to register.  A node left DOWN or DRAINED by an earlier
    # run (e.g. a killed slurmd) is resumed once, after giving it 5 seconds.
    local end=$((SECONDS + TIMEOUT)) resumed=0 state
    until node_ready; do
        state=$(node_state)
        if ((!resumed && SECONDS > end - TIMEOUT + 5)) && [[ $state == down* || $state == drain* ]]; then
            log "node $HOST is $state ($(sinfo -h -R -n "$HOST" -o '%E' 2>/dev/null)): resuming it"
            scontrol update nodename="$HOST" state=resume 2>/dev/null || true
            resumed=1
        fi
        ((SECONDS < end)) || die "node $HOST is '${state:-unknown}', not idle, after ${TIMEOUT}s" "$LOGDIR/slurmd.log"
        sleep 0.5
    done
}

# A trivial srun and a trivial batch job must complete and reach accounting.
smoke_test() {
    if [[ $(node_state) == allocated ]]; then
        # Every CPU is taken by real work: a smoke job would only queue.
        log "node $HOST is fully allocated: skipping the smoke jobs"
        return 0
    fi
    log "running a trivial srun and sbatch job"
    timeout 60 srun -p "$PARTITION" -N1 -n1 -t 1 -J baton-smoke-srun true </dev/null ||
        die "a trivial srun job did not complete" "$LOGDIR/slurmctld.log"
    local jobid
    jobid=$(timeout 60 sbatch --parsable --wait -p "$PARTITION" -t 1 -J baton-smoke \
        -o /dev/null --wrap true </dev/null) ||
        die "a trivial sbatch --wait job did not complete" "$LOGDIR/slurmctld.log"
    jobid=${jobid%%;*}
    wait_for 30 "the smoke job $jobid in sacct" "$LOGDIR/slurmdbd.log" \
        bash -c "sacct -n -X -P -j $jobid -o State </dev/null | grep -qx COMPLETED"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    require_root
    install_packages
    write_configs
    if ((CHANGED_SLURM)); then
        # Node and scheduler settings need a restart, not just a reconfigure.
        pid_of slurmd /run/slurmd.pid >/dev/null && { log "slurm.conf changed: restarting slurmd"; stop_daemon slurmd /run/slurmd.pid; }
        pid_of slurmctld /run/slurmctld.pid >/dev/null && { log "slurm.conf changed: restarting slurmctld"; stop_daemon slurmctld /run/slurmctld.pid; }
    fi
    start_mariadb
    start_munge
    start_slurmdbd
    start_slurmctld
    start_slurmd
    smoke_test
    printf 'slurm up: cluster=%s partition=%s node=%s cpus=%s realmemory=%sM slurmctld=%s:6817 slurmdbd=localhost:6819 (%ss)\n' \
        "$CLUSTER" "$PARTITION" "$HOST" "$NODE_CPUS" "$REAL_MEMORY" "$HOST" "$((SECONDS - T0))"
}

cmd_down() {
    require_root
    stop_daemon slurmd /run/slurmd.pid
    stop_daemon slurmctld /run/slurmctld.pid
    stop_daemon slurmdbd /run/slurmdbd.pid
    if [[ -e $RUNDIR/started-munged ]]; then
        stop_daemon munged /run/munge/munged.pid
        rm -f "$RUNDIR/started-munged"
    else
        log "munged was not started by this script: left alone"
    fi
    if [[ -e $RUNDIR/started-mariadb ]]; then
        local pids
        pids=$(ps -C mysqld_safe,mariadbd -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}')
        if mariadb_ok; then
            log "stopping MariaDB"
            mysqladmin --no-defaults --protocol=socket -uroot shutdown </dev/null ||
                die "could not stop MariaDB" "$MARIADB_LOG"
        elif [[ -n $pids ]]; then
            log "stopping MariaDB, which is not answering (pids ${pids//$'\n'/ })"
            # shellcheck disable=SC2086  # a list of pids
            kill -TERM $pids 2>/dev/null || true
        fi
        # shellcheck disable=SC2086  # a list of pids
        wait_gone 30 $pids || die "MariaDB did not stop within 30s" "$MARIADB_LOG"
        rm -f "$RUNDIR/started-mariadb"
    else
        log "MariaDB was not started by this script: left alone"
    fi
    echo "slurm down"
}

cmd_status() {
    local all=0 pid
    if mariadb_ok; then echo "mariadb    running"; else echo "mariadb    stopped"; all=1; fi
    local spec name pidfile
    for spec in munged:/run/munge/munged.pid slurmdbd:/run/slurmdbd.pid \
        slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
        name=${spec%%:*} pidfile=${spec#*:}
        if pid=$(pid_of "$name" "$pidfile"); then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s stopped\n' "$name"
            all=3
        fi
    done
    if ctld_ok; then
        echo "node       $HOST $(node_state)"
        sinfo 2>/dev/null || true
    fi
    ((all == 0)) || exit 3
}

cmd_ctld_stop() {
    require_root
    stop_daemon slurmctld /run/slurmctld.pid
    echo "slurmctld stopped"
}

cmd_ctld_start() {
    require_root
    start_slurmctld
    echo "slurmctld up"
}

main() {
    local cmd=${1:-up}
    case $cmd in
        up | down | ctld-stop | ctld-start)
            # One invocation at a time (tests may call this concurrently).
            install -d -m 755 "$RUNDIR"
            exec 9>"$RUNDIR/lock"
            flock -w 600 9 || die "another single-node.sh is still running"
            ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        ctld-stop) cmd_ctld_stop ;;
        ctld-start) cmd_ctld_start ;;
        -h | --help | help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
        *)
            echo "usage: $0 [up|down|status|ctld-stop|ctld-start]" >&2
            exit 2
            ;;
    esac
}

main "$@"
