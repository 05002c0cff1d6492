#!/usr/bin/env bash
# Label at scale with torchrun: bash tools/dist_segment.sh NUM_PROCESSES {segment|autolabel} INPUT... --prompt ... --out ...
# Each rank labels a disjoint share of the sorted images (one GPU per process when there are GPUs, else CPU);
# rank 0 assembles the outputs once all are done. A killed run resumes when rerun; one share alone:
# `repvit-plugins autolabel ... --shard RANK/WORLD`, then `... --merge-only`.
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (the output folder must be shared by all nodes).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash $0 NUM_PROCESSES {segment|autolabel} INPUT... --prompt TEXT --out FOLDER [options]" >&2
    exit 2
fi
GPUS=$1
shift 1
TOOLS=$(dirname "$0")
source "$TOOLS/_torchrun.sh"
torchrun_exec "$GPUS" -m repvit_plugins "$@"
