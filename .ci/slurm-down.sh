#!/usr/bin/env bash
# Stop what slurm-up.sh started: slurmd, slurmctld, and munged if it started it.
set -uo pipefail
DIR=${FI_SLURM_DIR:-/tmp/fi-slurm}
for d in slurmd slurmctld; do
  if [ -s "$DIR/$d.pid" ]; then kill "$(cat "$DIR/$d.pid")" 2>/dev/null; fi
done
for _ in $(seq 50); do
  alive=0
  for d in slurmd slurmctld; do [ -s "$DIR/$d.pid" ] && kill -0 "$(cat "$DIR/$d.pid")" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.2
done
if [ -e "$DIR/munged.ours" ] && [ -s /run/munge/munged.pid ]; then
  kill "$(cat /run/munge/munged.pid)" 2>/dev/null
  rm -f "$DIR/munged.ours"
fi
echo "slurm: down"
