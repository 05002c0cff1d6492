#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without GPUs the processes train on CPU with gloo.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG NUM_PROCESSES [tools/train.py options, e.g. --resume --amp]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
TOOLS=$(dirname "$0")
source "$TOOLS/_torchrun.sh"
torchrun_exec "$GPUS" "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
