# Sourced by dist_train.sh, dist_test.sh and dist_segment.sh: `torchrun_exec NPROC ARGS...` replaces the shell
# with torchrun running ARGS (a script or -m module and its options) in NPROC processes on this node.
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; PYTHON picks the interpreter.
torchrun_exec() {
    local nproc=$1
    shift
    export PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")/..${PYTHONPATH:+:$PYTHONPATH}"
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nproc" --master_port="${PORT:-29500}" "$@"
}
