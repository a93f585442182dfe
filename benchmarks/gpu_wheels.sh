#!/bin/bash
# Fill .whl/ with the wheels benchmarks/gpu_check.sh installs on a GPU machine that has torch and
# triton but no internet: diffusers, lightning and pydantic at this .venv's versions, with every
# package they need (their requirements as installed here, torch, triton and nvidia-* left out),
# for the GPU machine's CPython (PY, default 3.12) on x86-64 Linux. .whl/ is untracked, so it
# travels with the working tree. Run from the repository root:  bash benchmarks/gpu_wheels.sh
set -euo pipefail
PY=${PY:-3.12}
mkdir -p .whl
pins=$(.venv/bin/python - <<'PY'
import importlib.metadata as md
import re

def name(req):
    return re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")

skip = ("torch", "triton")
todo, seen = ["diffusers", "lightning", "pydantic"], {}
while todo:
    pkg = todo.pop()
    if pkg in seen or pkg in skip or pkg.startswith("nvidia-"):
        continue
    try:
        dist = md.distribution(pkg)
    except md.PackageNotFoundError:
        continue
    seen[pkg] = dist.version
    todo += [name(r) for r in dist.requires or [] if "extra ==" not in r]
print(" ".join(f"{p}=={v}" for p, v in sorted(seen.items())))
PY
)
echo "wheels for Python $PY: $pins"
# shellcheck disable=SC2086
.venv/bin/pip download -q --no-deps -d .whl --only-binary=:all: --python-version "$PY" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform linux_x86_64 --platform any $pins
ls .whl | wc -l
