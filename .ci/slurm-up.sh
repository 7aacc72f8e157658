#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests and for trying `fi-campaign submit`:
# munged, slurmctld and slurmd on 127.0.0.1, no systemd, no cgroups. State, spool and logs go
# in $FI_SLURM_DIR (default /tmp/fi-slurm). Needs root and the Debian packages slurm-wlm and
# munge. Idempotent: a cluster that answers `scontrol ping` is left alone. Stop: slurm-down.sh.
set -euo pipefail
DIR=${FI_SLURM_DIR:-/tmp/fi-slurm}
HOST=$(hostname -s)
# more CPUs than cores on a small machine (config_overrides): several array tasks share them
CPUS=${FI_SLURM_CPUS:-$(( $(nproc) < 8 ? 8 : $(nproc) ))}
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
CONF=/etc/slurm/slurm.conf
MARK="# written by fi-campaign .ci/slurm-up.sh"

if scontrol ping 2>/dev/null | grep -q UP; then echo "slurm: already up"; exit 0; fi
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm-up: $CONF exists and is not ours; not touching a real cluster's config" >&2; exit 1
fi
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" /etc/slurm

# munge: the key comes with the Debian package; make one if it is missing
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  touch "$DIR/munged.ours"
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

cat > "$CONF" <<CONFEOF
$MARK
ClusterName=fi
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups in a container: track processes by parentage, bind no tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFEOF

/usr/sbin/slurmctld -i
/usr/sbin/slurmd
for _ in $(seq 60); do
  if scontrol ping 2>/dev/null | grep -q UP && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
    echo "slurm: up on $HOST ($CPUS CPUs), logs in $DIR/log"; exit 0
  fi
  sleep 1
done
echo "slurm-up: the cluster did not come up; see $DIR/log" >&2
exit 1
