#!/bin/bash
# Every GPU check in one short run, for a lent GPU machine whose python3 already holds torch and
# triton (no internet there): the backbone vs diffusers, the Triton kernels, and the training
# pipeline on the GPU. Results go to $OUT (default gpu_out/); fold them in here with
#   .venv/bin/python benchmarks/backbone.py --report-only --merge gpu_out/backbone_cuda*.json
#   .venv/bin/python benchmarks/kernels.py --report-only --out gpu_out/kernels.json
# diffusers (and its one missing dependency) travel as wheels in .whl/ (see docs/kernels.md).
# Each part has its own time limit, so one that hangs or fails does not cost the others.
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
# flowcore's own metadata, for its entry points (the built-in modalities); the code runs from $PWD
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . >/dev/null
# the protein plugin too when a trained run travels for its GPU speed table (PROTEIN_RUN, below)
if [ -n "$PROTEIN_RUN" ]; then
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site plugins/protein >/dev/null
fi
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/machine.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/machine.txt"

part() {  # part NAME SECONDS CMD...: run CMD with a limit, its log in $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - t0)) s"
    grep -v -E "^\s*$|Warning|warn\(" "$OUT/$name.log" | tail -n 25
}

part kernels "${KERNELS_LIMIT:-330}" python3 benchmarks/kernels.py --out "$OUT/kernels.json" \
    --results-md "$OUT/kernels.md"
part backbone "${BACKBONE_LIMIT:-150}" python3 benchmarks/backbone.py --device cuda --profile \
    --runs fp32/0/8/20 bf16/0/8/20 bf16/0/32/20 bf16/0/8/10/compile --out "$OUT/backbone_cuda.json" \
    --results-md "$OUT/backbone.md"
part backbone_large "${BACKBONE_LARGE_LIMIT:-80}" python3 benchmarks/backbone.py --device cuda --profile \
    --layers 12 --heads 16 --latent 64 --runs bf16/0/8/10 fp32/0/8/6 --out "$OUT/backbone_cuda_large.json" \
    --results-md "$OUT/backbone_large.md"
part pipeline "${PIPELINE_LIMIT:-60}" python3 -m flowcore.cli train examples/configs/toy2d_labeled.yaml \
    --set model.network=transformer --set model.hidden=64 --set train.steps=300 --set train.accelerator=gpu \
    --set out_dir=/tmp/gpu_toy
if [ -n "$PROTEIN_RUN" ]; then  # seconds per backbone (lengths 100/200/300, 20/50/100 steps); needs no dataset
    part protein "${PROTEIN_LIMIT:-90}" python3 benchmarks/protein.py --run "$PROTEIN_RUN" --speed-only --device cuda \
        --out "$OUT/protein_gpu.json"
fi
