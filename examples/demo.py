"""`make demo`: any-to-any on digits world. One FlowTransformer over an MNIST digit, the same digit
spoken by espeak-ng, and its label, asked for every direction.

The repository ships the trained run (examples/runs/digits_world: config.yaml and an 11 MB
model.safetensors). It was made in four stages, each warm-started from the one before:

    flowcore train examples/configs/digits_world.yaml          # runs/digits_world
    flowcore train examples/configs/digits_world_more.yaml     # runs/digits_world_more
    flowcore train examples/configs/digits_world_tasks.yaml    # runs/digits_world_tasks
    flowcore train examples/configs/digits_world_speech.yaml   # runs/digits_world_speech: the shipped run

and the demo measures and shows it with the commands a user types (docs/any-to-any.md):

    flowcore eval examples/runs/digits_world --count 100 --out outputs/demo/eval.json
    flowcore eval examples/runs/digits_world --count 100 --via label --out outputs/demo/eval_via_label.json \
        --direction 'audio|image' --direction 'image|audio' --direction 'image,audio'
    flowcore gallery examples/runs/digits_world --scores outputs/demo/eval.json --out outputs/demo/gallery \
        --via label --via-scores outputs/demo/eval_via_label.json

then opens the page in headless Chromium (when installed) to check that every cell loaded and to
take a screenshot. `python examples/demo.py --retrain` first trains the four stages from scratch
into outputs/demo/stage1, stage2, stage3 and run (about four hours on 2 CPU cores) and uses the result.
The first run also trains the two metric classifiers (MNIST-5k, spoken digits; under a minute
each, cached in ~/.cache/flowcore/).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads
# slowed a training step ~8x here. Set before torch is imported; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from flowcore.cli import main  # noqa: E402

SHIPPED = Path("examples/runs/digits_world")
OUT = Path("outputs/demo")


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: flowcore {' '.join(argv)}", flush=True)
    begun = time.perf_counter()
    code = main(argv)
    if code:
        sys.exit(code)
    print(f"== {title} took {time.perf_counter() - begun:.1f} s", flush=True)


CHAINED = ["audio|image", "image|audio", "image,audio"]  # through the label: made first, then given


def summary(report: dict, chained: dict) -> str:
    """One line per direction: class accuracy against the real-data ceiling of the same classifier."""
    ceilings = report.get("ceilings", {})
    lines = [f"{'direction':<34} {'score':<18} {'real data':>9} {'ratio':>6}"]
    rows = [(k, s, "") for k, s in report["metrics"].items()]
    rows += [(k, s, " (via label)") for k, s in chained["metrics"].items()]
    for key, scores, via in rows:
        made, _, given = key.partition("|")
        if "," in made:
            what, value, real = "agreement", scores.get("class_agreement"), ceilings.get(f"{made}.class_agreement")
        elif made == "label":
            what, value, real = "accuracy", scores.get("accuracy"), 1.0
        else:
            what, value, real = "class accuracy", scores.get("class_accuracy"), ceilings.get(f"{made}.class_accuracy")
        if value is None:
            continue
        ratio = f"{value / real:.3f}" if real else "-"
        shown = f"{made.replace(',', '+')} <- {given.replace(',', '+') or 'nothing'}{via}"
        lines.append(f"{shown:<34} {what + f' {value:.3f}':<18} {real or float('nan'):>9.3f} {ratio:>6}")
    return "\n".join(lines)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="train the run from scratch instead of the shipped one")
    args = parser.parse_args()
    started = time.perf_counter()
    run_dir = SHIPPED
    if args.retrain:
        stages = ["digits_world", "digits_world_more", "digits_world_tasks", "digits_world_speech"]
        outs = [OUT / "stage1", OUT / "stage2", OUT / "stage3", OUT / "run"]
        for i, (name, out) in enumerate(zip(stages, outs)):
            start = ["--set", f"train.init_from={outs[i - 1]}"] if i else []
            step(f"train, stage {i + 1}", ["train", f"examples/configs/{name}.yaml", "--set", f"out_dir={out}",
                                           *start, "--set", "train.progress_bar=false"])
        run_dir = outs[-1]
    step("eval", ["eval", str(run_dir), "--count", "100", "--out", str(OUT / "eval.json")])
    step("eval, chained through the label", ["eval", str(run_dir), "--count", "100", "--via", "label",
                                             "--out", str(OUT / "eval_via_label.json"),
                                             *[a for d in CHAINED for a in ("--direction", d)]])
    step("gallery", ["gallery", str(run_dir), "--out", str(OUT / "gallery"), "--scores", str(OUT / "eval.json"),
                     "--via", "label", "--via-scores", str(OUT / "eval_via_label.json")])
    page = OUT / "gallery" / "index.html"

    from flowcore.train.gallery import check_page, find_browser

    checked = "no headless Chromium installed: open the page yourself"
    if find_browser() is not None:
        found = check_page(page, screenshot=OUT / "gallery.png")
        checked = (f"headless Chromium: {found['images'][0]}/{found['images'][1]} images loaded, "
                   f"{found['audio'][0]}/{found['audio'][1]} clips playable; screenshot {OUT / 'gallery.png'}")
    report = json.loads((OUT / "eval.json").read_text())
    chained = json.loads((OUT / "eval_via_label.json").read_text())
    print(f"""
digits world, {report['count']} held-out items, {report['steps']} {report['solver']} steps, cfg {report['cfg']}:
{summary(report, chained)}
page      {page}  ({checked})
metrics   {OUT / 'eval.json'}, {OUT / 'eval_via_label.json'}
demo wall time {time.perf_counter() - started:.0f} s""")


if __name__ == "__main__":
    run()
