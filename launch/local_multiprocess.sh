#!/usr/bin/env bash
# Runs N cooperating ebmjax processes on this machine: the multi-host code path (per-process data,
# collectives between processes, Orbax writing from every process, only process 0 logging) without
# a cluster. Useful to try a multi-host setup on a laptop, or on one GPU box with one process per GPU.
#
# Usage:
#   launch/local_multiprocess.sh N [ebmjax.main arguments...]
# Example (two CPU processes training the digits demo together):
#   launch/local_multiprocess.sh 2 --config configs/mdsm_digits.py --workdir runs/digits_2proc
#
# Environment (all optional):
#   PORT                     coordinator port on localhost (default: a free port)
#   PYTHON                   interpreter (default: python)
#   CPU_DEVICES_PER_PROCESS  CPU only: fake devices per process (XLA_FLAGS host device count)
#   ONE_GPU_PER_PROCESS=1    GPU boxes: process i uses GPU i only (JAX_LOCAL_DEVICE_IDS=i)
#
# Each process gets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID; ebmjax's default
# dist.initialize=auto starts jax.distributed from them. Output lines are prefixed with [p<i>].
# Ctrl-C or SIGTERM is passed on to every process: each saves a checkpoint at the same step and
# stops; rerunning the same command resumes. The exit code is the first non-zero one of the processes.
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
N=$1
shift
PYTHON=${PYTHON:-python}
PORT=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}

pids=()
forward() {  # pass a signal on to every child; each checkpoints and exits
  for pid in "${pids[@]}"; do kill -s "$1" "$pid" 2>/dev/null || true; done
}
trap 'forward INT' INT
trap 'forward TERM' TERM

for ((i = 0; i < N; i++)); do
  (
    export JAX_COORDINATOR_ADDRESS="localhost:${PORT}" JAX_NUM_PROCESSES="$N" JAX_PROCESS_ID="$i"
    if [[ -n "${CPU_DEVICES_PER_PROCESS:-}" ]]; then
      export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${CPU_DEVICES_PER_PROCESS}"
    fi
    if [[ "${ONE_GPU_PER_PROCESS:-0}" == 1 ]]; then
      export JAX_LOCAL_DEVICE_IDS="$i"
    fi
    # exec: the signal forwarded to this pid reaches Python itself; sed prefixes its output lines.
    exec "$PYTHON" -u -m ebmjax.main "$@" > >(sed -u "s/^/[p$i] /") 2>&1
  ) &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  # `wait` returns early (status > 128) when a trapped signal arrives; wait again for the real exit.
  while true; do
    set +e
    wait "$pid"
    code=$?
    set -e
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  if [[ $code -ne 0 && $status -eq 0 ]]; then status=$code; fi
done
exit "$status"
