"""`make demo-image`: class-conditional MNIST-5k with the image plugin — train, sample, evaluate, score.

Runs the same commands a user types (docs/cli.md, docs/plugins/image.md), a few minutes on 2 CPU cores:

    flowcore train examples/configs/image_demo.yaml --set out_dir=outputs/demo_image/run
    flowcore sample outputs/demo_image/run --make image --given label=7 --count 16 --steps 8 \\
        --out outputs/demo_image/sevens
    flowcore eval outputs/demo_image/run --out outputs/demo_image/eval.json
    flowcore image-score outputs/demo_image/run --steps 8 --count 500 --grid outputs/demo_image/grid.png \\
        --out outputs/demo_image/score.json

`flowcore eval`, the first to score, also trains the MNIST-5k metric classifier once (cached in
~/.cache/flowcore/image/). A second `make demo-image` resumes the finished run (nothing left to
train) and samples and scores again.
"""

import json
import os
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads
# slowed a training step ~8x here. Set before torch is imported; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from flowcore.cli import main  # noqa: E402

OUT = Path("outputs/demo_image")
RUN = OUT / "run"
started = time.perf_counter()


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: flowcore {' '.join(argv)}", flush=True)
    begun = time.perf_counter()
    code = main(argv)
    if code:
        sys.exit(code)
    print(f"== {title} took {time.perf_counter() - begun:.1f} s", flush=True)


step("train", ["train", "examples/configs/image_demo.yaml", "--set", f"out_dir={RUN}",
               "--set", "train.progress_bar=false"])
step("sample", ["sample", str(RUN), "--make", "image", "--given", "label=7", "--count", "16", "--steps", "8",
                "--out", str(OUT / "sevens")])
step("eval", ["eval", str(RUN), "--out", str(OUT / "eval.json")])
step("score", ["image-score", str(RUN), "--steps", "8", "--count", "500", "--grid", str(OUT / "grid.png"),
               "--out", str(OUT / "score.json")])

metrics = json.loads((OUT / "eval.json").read_text())["metrics"]["image|label"]
score = json.loads((OUT / "score.json").read_text())
eight = score["steps"]["8"]
print(f"""
class-conditional MNIST-5k, 8 Euler steps, cfg {score['cfg']:g}, {score['count']} samples:
  class accuracy {eight['accuracy']:.1%} (the metric classifier reads real test digits at \
{score['classifier']['test_accuracy']:.1%})
  classifier Fréchet distance {eight['classifier_fd']:.1f} (flowcore eval on held-out digits: \
{metrics['classifier_fd']:.1f})
demo wall time {time.perf_counter() - started:.0f} s
outputs:
  run directory   {RUN}/  (model.safetensors, config.yaml, versions.json, checkpoints/, logs/metrics.csv)
  sample grid     {OUT / 'grid.png'}  (row = class 0-9, 8 Euler steps)
  sevens          {OUT / 'sevens' / 'image'}/  (16 PNGs and sample_preview.png)
  scores          {OUT / 'score.json'}
  metrics         {OUT / 'eval.json'}""")
