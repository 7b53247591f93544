#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for test/integration/slurm-job.test.ts and CI:
#
#   bash scripts/slurm-local.sh up     # munged, slurmctld and slurmd; waits until the node is idle
#   bash scripts/slurm-local.sh down   # cancels this cluster's jobs, stops the daemons by their pid files
#   export SLURM_CONF=/tmp/hwa-slurm/slurm.conf   # then sbatch, squeue, sinfo talk to it
#
# Needs root and Debian's packages: apt-get update && apt-get install -y slurm-wlm munge. Everything else
# (config, state, spool, logs, pid files) lives in $HWA_SLURM_DIR (default /tmp/hwa-slurm), so /etc/slurm and a
# system cluster, if any, are left alone. No cgroups (containers often have none writable): processes are
# tracked by linuxproc, tasks are not bound, no accounting — what a test cluster needs and no more.
set -euo pipefail

DIR=${HWA_SLURM_DIR:-/tmp/hwa-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
export SLURM_CONF=$CONF

log() { echo "slurm-local: $*" >&2; }

# The pid in a pid file, if that process still runs.
live_pid() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops the process of a pid file (TERM, then KILL after 10 s) and removes the file.
stop_pid() {
  local pid i
  if pid=$(live_pid "$1"); then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

up() {
  for bin in munged slurmctld slurmd sbatch sinfo scontrol; do
    command -v "$bin" >/dev/null || { log "$bin not found: apt-get install -y slurm-wlm munge"; exit 1; }
  done
  [[ $(id -u) == 0 ]] || { log "needs root (slurmd starts jobs as their users)"; exit 1; }
  mkdir -p "$DIR/state" "$DIR/spool"

  # munge: the Debian package makes the key; its runtime folder must exist, owned by munge, before munged.
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge && chmod 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged
    touch "$DIR/munged.started-here"
    for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi

  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster.
ClusterName=hwa
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${HWA_SLURMCTLD_PORT:-6817}
SlurmdPort=${HWA_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
ReturnToService=2
# Two CPUs whatever the machine has, so that a 2-task job fits on any machine this runs on.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  # A pid file whose process is gone (a machine restarted, a daemon killed) would keep the daemon from starting.
  live_pid "$DIR/slurmctld.pid" >/dev/null || { rm -f "$DIR/slurmctld.pid"; slurmctld -c -f "$CONF"; }
  live_pid "$DIR/slurmd.pid" >/dev/null || { rm -f "$DIR/slurmd.pid"; slurmd -f "$CONF" -N "$NODE"; }

  local state=''
  for _ in $(seq 1 300); do
    state=$(sinfo -h -o %t 2>/dev/null | head -n 1 || true)
    [[ $state == idle ]] && break
    # A node that was down before (a killed slurmd) is brought back.
    [[ $state == down* || $state == drain* ]] && scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    sleep 0.1
  done
  if [[ $state != idle ]]; then
    log "the node did not become idle (state '${state:-none}'); logs: $DIR/slurmctld.log $DIR/slurmd.log"
    tail -n 5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    exit 1
  fi
  log "cluster up: node $NODE idle; export SLURM_CONF=$CONF"
}

down() {
  if [[ -f $CONF ]] && live_pid "$DIR/slurmctld.pid" >/dev/null; then
    # This cluster's jobs first: their job steps outlive a stopped slurmd.
    scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 100); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.1; done
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  if [[ -f $DIR/munged.started-here ]]; then
    stop_pid /run/munge/munged.pid
    rm -f "$DIR/munged.started-here"
  fi
  log "cluster down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
