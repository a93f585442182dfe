#!/bin/bash
# Every GPU check in about 11 minutes of limits, for a lent GPU machine whose python3 holds torch
# and triton (no internet there). First, on the machine with internet (from the repository root):
#   bash benchmarks/gpu_wheels.sh          # .whl/: diffusers, lightning, pydantic and what they need
# then, on the GPU machine (results in $OUT, default gpu_out/), all parts in one call, or in two
# calls of under 10 minutes each (PARTS names the parts to run):
#   PARTS="kernels throughput" bash benchmarks/gpu_check.sh      # 90 + 330 s
#   PARTS="memory pipeline" bash benchmarks/gpu_check.sh         # 150 + 60 s
# and back here, fold the results in (the JSON and the RESULTS.md sections):
#   cp gpu_out/throughput.json benchmarks/results/throughput.json
#   .venv/bin/python benchmarks/throughput.py --report-only
#   .venv/bin/python benchmarks/kernels.py --report-only --out gpu_out/kernels.json
# Parts, each with its own time limit (a part that hangs or fails costs only itself; the JSON is
# written after every measured run, so a part stopped by its limit keeps what it measured):
#   kernels       90 s  the Triton kernels' bf16 fwd and fwd+bwd bandwidth vs eager and compiled torch
#   throughput   330 s  SD3-medium-like step: flowcore vs diffusers, eager / compiled / CUDA graphs; MFU
#   memory       150 s  largest batch and sequence in 80 GB, each model alone, with/without checkpointing
#   pipeline      60 s  flowcore train on the GPU (train.compile auto, fused AdamW, bf16-mixed)
OUT=${OUT:-gpu_out}
PARTS=${PARTS:-kernels throughput memory pipeline protein}  # protein only with PROTEIN_RUN
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then  # only what the machine lacks: what it has is kept
    python3 -m pip install -q --no-index --find-links .whl --break-system-packages diffusers lightning pydantic \
        || python3 -m pip install -q --no-index --find-links .whl --target /tmp/site diffusers lightning pydantic
fi
# flowcore's own metadata, for its entry points (the built-in modalities); the code runs from $PWD
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . >/dev/null
if [ -n "$PROTEIN_RUN" ]; then  # optional, beyond the 14 minutes: the protein sampler's GPU speed table
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site plugins/protein >/dev/null
fi
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/machine.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/machine.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$OUT/machine.txt"

part() {  # part NAME SECONDS CMD...: run CMD with a limit, its log in $OUT/NAME.log (if PARTS names it)
    local name=$1 limit=$2; shift 2
    case " $PARTS " in *" $name "*) ;; *) return ;; esac
    echo "=== $name (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - t0)) s"
    grep -v -E "^\s*$|Warning|warn\(" "$OUT/$name.log" | tail -n 25
}

part kernels "${KERNELS_LIMIT:-90}" python3 benchmarks/kernels.py --no-sweep --no-backbone --dtypes bf16 \
    --out "$OUT/kernels.json" --results-md "$OUT/kernels.md"
part throughput "${THROUGHPUT_LIMIT:-330}" python3 benchmarks/throughput.py --pairs 6 \
    --out "$OUT/throughput.json" --results-md "$OUT/throughput.md"
part memory "${MEMORY_LIMIT:-150}" python3 benchmarks/throughput.py --memory --time-limit 135 \
    --out "$OUT/throughput.json" --results-md "$OUT/throughput.md"
part pipeline "${PIPELINE_LIMIT:-60}" python3 -m flowcore.cli train examples/configs/toy2d_labeled.yaml \
    --set model.network=transformer --set model.hidden=64 --set train.steps=300 --set train.accelerator=gpu \
    --set out_dir=/tmp/gpu_toy
if [ -n "$PROTEIN_RUN" ]; then  # seconds per backbone (lengths 100/200/300, 20/50/100 steps); needs no dataset
    part protein "${PROTEIN_LIMIT:-90}" python3 benchmarks/protein.py --run "$PROTEIN_RUN" --speed-only --device cuda \
        --out "$OUT/protein_gpu.json"
fi
