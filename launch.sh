#!/usr/bin/env bash
# Launch jaxcxr training on one machine, several local processes, a SLURM cluster or a TPU pod.
#
#   ./launch.sh local  configs/chest_xray.py runs/x [--config.key=value ...]   # all local devices
#   ./launch.sh procs  configs/chest_xray.py runs/x N [...]   # N local processes (CPU/GPU testing)
#   sbatch --nodes=2 --gpus-per-node=8 launch.sh slurm configs/chest_xray.py runs/x [...]
#   ./launch.sh tpu    configs/chest_xray.py gs://bucket/runs/x TPU_NAME ZONE [...]
#
# One process per host drives all of that host's accelerators; jax.distributed.initialize() finds
# the coordinator from SLURM's or the TPU runtime's environment (--multihost). The workdir must be
# shared by all hosts (NFS, GCS). Re-running the same command resumes from the latest checkpoint.
set -euo pipefail
mode=${1:?usage: launch.sh local|procs|slurm|tpu CONFIG WORKDIR ...}
config=${2:?config file}
workdir=${3:?workdir}
shift 3

case "$mode" in
  local)
    exec python -m jaxcxr.train --config "$config" --workdir "$workdir" "$@"
    ;;
  procs)
    n=${1:?number of processes}
    shift
    port=${JAXCXR_PORT:-12355}
    pids=()
    for ((i = 0; i < n; i++)); do
      python -m jaxcxr.train --config "$config" --workdir "$workdir" \
        --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" "$@" &
      pids+=($!)
    done
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    exit $status
    ;;
  slurm)
    # Inside an sbatch allocation: one task per node.
    exec srun --ntasks-per-node=1 python -m jaxcxr.train --config "$config" --workdir "$workdir" \
      --multihost "$@"
    ;;
  tpu)
    tpu=${1:?TPU name}
    zone=${2:?zone}
    shift 2
    exec gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
      "cd ~/jaxcxr && python -m jaxcxr.train --config $config --workdir $workdir --multihost $*"
    ;;
  *)
    echo "unknown mode '$mode' (local|procs|slurm|tpu)" >&2
    exit 2
    ;;
esac
