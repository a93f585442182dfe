"""`make demo`: the real pipeline on the smallest model flowcore has — train, sample, evaluate.

Runs the same commands a user types (docs/cli.md):

    flowcore train examples/configs/toy2d.yaml --set out_dir=outputs/demo/run
    flowcore sample outputs/demo/run --make toy2d --steps 32 --solver euler --cfg 1 --seed 0 --out outputs/demo/samples
    flowcore eval outputs/demo/run

A second `make demo` resumes the finished run (nothing left to train) and samples again.
"""

import json
import sys
import time
from pathlib import Path

from flowcore.cli import main

OUT = Path("outputs/demo")
RUN = OUT / "run"


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: flowcore {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    code = main(argv)
    if code:
        sys.exit(code)
    print(f"== {title} took {time.perf_counter() - started:.1f} s", flush=True)


step("train", ["train", "examples/configs/toy2d.yaml", "--set", f"out_dir={RUN}", "--set", "train.progress_bar=false"])
step("sample", ["sample", str(RUN), "--make", "toy2d", "--steps", "32", "--solver", "euler", "--cfg", "1",
                "--seed", "0", "--count", "2000", "--out", str(OUT / "samples")])
step("eval", ["eval", str(RUN), "--out", str(OUT / "eval.json")])

metrics = json.loads((OUT / "eval.json").read_text())["metrics"]["toy2d"]
print(f"""
sliced Wasserstein to held-out moons: {metrics['sliced_wasserstein']:.4f} (mmd {metrics['mmd']:.4f})
outputs:
  run directory   {RUN}/  (model.safetensors, config.yaml, versions.json, checkpoints/, logs/metrics.csv, samples/)
  samples         {OUT / 'samples' / 'toy2d' / 'sample.csv'}
  scatter plot    {OUT / 'samples' / 'toy2d' / 'sample_preview.png'}
  metrics         {OUT / 'eval.json'}""")
