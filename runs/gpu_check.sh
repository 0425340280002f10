#!/usr/bin/env bash
# Issue 14 item 5: everything simgraph checks on a GPU, in one run of under 5 minutes, on a fresh
# machine holding a copy of this repository (no internet; PyTorch with CUDA already installed).
#
#   bash runs/gpu_check.sh            # results under $OUT (default runs/out/gpu_check)
#
# 1. install simgraph (no dependencies fetched), 2. the CUDA tests (-m gpu, and the tests run on
# every device), 3. `simgraph bench --device cuda` for the Hebbian and MLP rules (dense 1k, sparse
# 10k, batch 1 and 16, typed nets, and the recall default's meta-training step fused vs plain),
# 4. that meta-training step on the CPU of the same machine, 5. CUDA graphs
# (`simulate(compile={"mode": "reduce-overhead"})`) against eager and plain compile on the small
# recall nets. Each part has its own time limit and a failing part does not stop the others.
# Without CUDA the GPU parts are skipped with a message, the CPU part still runs, and the script
# exits with status 3.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/out/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
started=$(date +%s)
log() { echo "[gpu_check +$(( $(date +%s) - started ))s] $*" | tee -a "$OUT/summary.txt"; }
part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, record the exit status
    local name=$1 limit=$2; shift 2
    log "$name: $*"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    log "$name: exit $rc$([ $rc -eq 124 ] && echo " (stopped at its ${limit}s limit)")"
    [ $rc -eq 0 ] || status=1
    tail -n 25 "$OUT/$name.log"
}

: >"$OUT/summary.txt"
log "machine: $(uname -m), $(nproc) cores; $($PY --version 2>&1)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT/summary.txt" 2>&1 || true
if ! $PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda); sys.exit(0 if torch.cuda.is_available() else 1)" \
        >>"$OUT/summary.txt" 2>&1; then
    CUDA=0
    log "CUDA is not available to $PY (torch without CUDA, or no GPU): the GPU parts are skipped"
else
    CUDA=1
    log "GPU: $($PY -c 'import torch; print(torch.cuda.get_device_name(0))')"
fi

# 1. install: no index, no build isolation (setuptools is already there); PYTHONPATH covers a failure
part install 60 $PY -m pip install --no-deps --no-build-isolation --no-index -q -e .
SIMGRAPH=("$PY" -c "import sys; from simgraph.cli import main; sys.exit(main(sys.argv[1:]))")

if [ $CUDA -eq 1 ]; then
    # 2. CUDA tests: the gpu-marked ones, and the device-parametrised tests' cuda cases
    part tests_gpu 60 $PY -m pytest -q -x -m gpu -p no:cacheprovider tests/
    part tests_device_cuda 45 $PY -m pytest -q -x -k cuda -p no:cacheprovider tests/test_rules_and_simulate.py

    # 3. the bench on the GPU (its JSON: every row, ratio and the measured bandwidth / matmul roofline)
    part bench_cuda 150 "${SIMGRAPH[@]}" bench --device cuda --rules hebbian,mlp --batches 1,16 --no-memory \
        --json "$OUT/bench_cuda.json" --out "$OUT"
fi

# 4. the recall default's meta-training step on this machine's CPU (GPU vs CPU: against the bench_cuda row)
part train_step_cpu 60 "${SIMGRAPH[@]}" bench --device cpu --train-step --repeats 2 --json "$OUT/train_step_cpu.json"

if [ $CUDA -eq 1 ]; then
    # 5. CUDA graphs for the small recall nets: one episode forward, and forward+backward
    part cuda_graphs 75 $PY - "$OUT/cuda_graphs.json" <<'EOF'
import json, statistics, sys, time
import torch
import simgraph as sg
from simgraph.topologies import recall_network
from simgraph.train.config import Config

cfg = Config()
task = cfg.make_task()
nets = {"recall default (32 neurons)": cfg.make_graph(task, "cuda"),
        "recall_network 16-64-16": recall_network(16, 64, 16, device="cuda")}
results = []
for name, graph in nets.items():
    torch.manual_seed(0)
    rule = (cfg.make_rule(graph) if graph.num_neuron_types == 1 else
            sg.rules.MLPRule(graph.num_neuron_types, graph.num_synapse_types)).to("cuda")
    u = torch.randn(34, 32, graph.num_inputs, device="cuda")
    params = [p for p in rule.parameters() if p.requires_grad]
    for how, compile in (("eager", False), ("compile", {}), ("cuda graphs", {"mode": "reduce-overhead"})):
        for backward in (False, True):
            def run():
                with torch.set_grad_enabled(backward):
                    out = sg.simulate(rule, graph, u, compile=compile).outputs
                    if backward:
                        torch.autograd.grad(out.square().sum(), params, allow_unused=True)
                torch.cuda.synchronize()
            try:
                t = time.perf_counter(); run(); first = time.perf_counter() - t
                run()
                times = []
                for _ in range(5):
                    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
                row = dict(net=name, how=how, mode="fwd+bwd" if backward else "fwd", first_s=round(first, 2),
                           s_per_episode=statistics.median(times))
            except Exception as exc:  # report and go on: one variant failing must not hide the others
                row = dict(net=name, how=how, mode="fwd+bwd" if backward else "fwd", error=f"{type(exc).__name__}: {exc}"[:300])
            print(row, flush=True)
            results.append(row)
json.dump(results, open(sys.argv[1], "w"), indent=1)
EOF
fi

log "done in $(( $(date +%s) - started ))s; results in $OUT"
if [ $CUDA -eq 0 ]; then
    log "no CUDA: only the CPU part ran"
    exit 3
fi
exit $status
