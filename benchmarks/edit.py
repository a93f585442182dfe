"""edit: editing MNIST-5k digits by inversion and by FlowEdit (`flowcore edit`, FlowPipeline.edit) with the base flow.

For --count real test images (the same number of each class) of the class-conditional run
--run (examples/configs/image_mnist.yaml):

  1. reconstruction: invert under the true label and regenerate under it (cfg 1) with euler,
     rf_solver and fireflow at --steps steps: PSNR on pixels in [-1, 1] (peak-to-peak 2), mean
     over images, and its minimum;
  2. edits to a new label (label + 1 + (i mod 9), mod 10: every other class in turn), inverted
     under the true label and regenerated under the new one with cfg --cfg, for each setting
     (solver, strength, re-injection of the U-Net's first block `down1`), or edited by FlowEdit
     (no inversion; strength and target cfg per setting): the metric
     classifier's accuracy on the target class, as a fraction of its accuracy on real test
     images (the ceiling); and closeness to the source against a fresh sample of the target
     class (same count, the run's sampler: 8 Euler steps, cfg --cfg): pixel L2, and L2 between
     the classifier's 128 penultimate features with the class direction removed (the component
     along the difference of the source and target rows of its last linear layer), each the
     fraction of inputs whose edit is closer than the fresh sample (and, stricter on class
     content, the features with the span of every class row of that layer removed);
     the FlowEdit setting of the targets (--flowedit, chosen on these sources) is scored again
     with other noise draws (NOISE_SEEDS) on these and on as many other test images (the next
     ones of each class), which no setting was chosen on;
  3. a PNG sheet: sources, their fireflow edits and their FlowEdit edits
     (benchmarks/results/edit_sheet.png).

Writes benchmarks/results/edit.json and the "## edit" section of benchmarks/RESULTS.md.

Run:  .venv/bin/python benchmarks/edit.py --run runs/image_mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parent
SETTINGS = [  # (method, solver, strength, inject steps, target cfg; None: --cfg)
    ("inversion", "euler", 1.0, 0, None), ("inversion", "rf_solver", 1.0, 0, None),
    ("inversion", "fireflow", 1.0, 0, None), ("inversion", "fireflow", 1.0, 2, None),
    ("inversion", "fireflow", 1.0, 4, None), ("inversion", "rf_solver", 1.0, 2, None),
    ("inversion", "fireflow", 0.8, 0, None), ("inversion", "fireflow", 0.6, 0, None),
    ("flowedit", "euler", 1.0, 0, None), ("flowedit", "euler", 0.8, 0, None), ("flowedit", "euler", 0.8, 0, 2.5),
    ("flowedit", "euler", 0.85, 0, 2.0), ("flowedit", "euler", 0.7, 0, None), ("flowedit", "euler", 0.85, 0, None),
    ("flowedit", "euler", 0.9, 0, None),
]
INVERSION = ("inversion", "fireflow", 1.0, 0, None)  # the inversion edit of the targets and the sheet
FLOWEDIT = (0.8, 2.5)  # strength and target cfg of the FlowEdit edit of the targets and the sheet (--flowedit)
NOISE_SEEDS = (0, 1, 2)  # FlowEdit's noise draws, each scored on both source sets


def psnr(a, b):
    import torch

    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/image_mnist")
    parser.add_argument("--count", type=int, default=200, help="source images (a multiple of 10)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=None, help="guidance of the target (default: sample.cfg)")
    parser.add_argument("--seed", type=int, default=0, help="FlowEdit's noise")
    parser.add_argument("--flowedit", type=float, nargs=2, default=FLOWEDIT, metavar=("STRENGTH", "CFG"),
                        help="the FlowEdit setting scored against the targets, again on other noise and sources, "
                             "and shown on the sheet (chosen on the first sources: 0.8 2.5 for MNIST-5k, 0.85 2.5 "
                             "for Fashion-MNIST)")
    parser.add_argument("--name", default="edit",
                        help="results/NAME.json, NAME_sheet.png and RESULTS.md's NAME section (edit_fashion with "
                             "--run runs/image_fashion_6k: image_fashion.yaml with train.steps=6000)")
    args = parser.parse_args()

    import torch

    import flowcore
    from flowcore_image.classifier import _stack_split
    from flowcore_image.codec import ImageCodec
    from flowcore_image.modality import make_grid

    torch.manual_seed(0)
    pipe = flowcore.load(args.run, device="cpu")
    clf = pipe.bundles["image"].modality.classifier
    cfg = pipe.config.sample.cfg if args.cfg is None else args.cfg
    images, labels, classes = _stack_split(pipe.bundles["image"].modality.classifier_dataset, "test")
    per = args.count // classes

    def sources(offset: int):
        """``per`` test images of each class from the ``offset``-th on, and their target labels."""
        pick = torch.cat([(labels == k).nonzero().squeeze(1)[offset:offset + per] for k in range(classes)])
        x, y = images[pick].float(), labels[pick].long()
        return x, y, (y + 1 + torch.arange(len(y)) % (classes - 1)) % classes

    x, y, target = sources(0)
    src = [x[i] for i in range(len(x))]
    timings: dict[str, float] = {}

    recon = {}
    for solver in ("euler", "rf_solver", "fireflow"):
        start = time.perf_counter()
        back = torch.stack(pipe.edit("image", src, {"label": y.tolist()}, {"label": y.tolist()},
                                     steps=args.steps, solver=solver, cfg=1.0)).clamp(-1, 1)
        timings[f"reconstruct_{solver}"] = round(time.perf_counter() - start, 1)
        p = psnr(back, x)
        recon[solver] = {"psnr_mean": round(float(p.mean()), 2), "psnr_min": round(float(p.min()), 2),
                         "rms": round(float(((back - x) ** 2).mean().sqrt()), 4)}
        print(f"reconstruction {solver}: {recon[solver]}", flush=True)

    weight = clf.model.head[-1].weight.detach()  # [K, 128]
    basis = torch.linalg.qr(weight.T).Q  # [128, K]: the span of every class row of the last layer
    ceiling = clf.test_accuracy

    def feats(images, src_label, tgt_label):
        """Penultimate features without the source-to-target class direction, and without every class row."""
        f = clf.features(images)
        d = weight[tgt_label] - weight[src_label]
        d = d / d.norm(dim=1, keepdim=True)
        return f - (f * d).sum(1, keepdim=True) * d, f - (f @ basis) @ basis.T

    def scorer(x, y, target):
        """Scores of edits of ``x`` (labels ``y``) to ``target`` against a fresh sample of each target."""
        start = time.perf_counter()
        fresh = torch.stack(pipe.generate("image", {"label": target.tolist()}, steps=8, solver="euler", cfg=cfg,
                                          seed=1)["image"]).clamp(-1, 1)
        timings.setdefault("fresh", round(time.perf_counter() - start, 1))
        f_src, s_src = feats(x, y, target)
        f_fresh, s_fresh = feats(fresh, y, target)
        pix_fresh = (fresh - x).flatten(1).norm(dim=1)
        feat_fresh, style_fresh = (f_fresh - f_src).norm(dim=1), (s_fresh - s_src).norm(dim=1)

        def score(out) -> dict:
            acc = float((clf.predict(out) == target).double().mean())
            pix = (out - x).flatten(1).norm(dim=1)
            f_out, s_out = feats(out, y, target)
            feat, style = (f_out - f_src).norm(dim=1), (s_out - s_src).norm(dim=1)
            return {"target_accuracy": round(acc, 4), "of_ceiling": round(acc / ceiling, 4),
                    "closer_pixels": round(float((pix < pix_fresh).double().mean()), 4),
                    "closer_features": round(float((feat < feat_fresh).double().mean()), 4),
                    "closer_features_no_class_rows": round(float((style < style_fresh).double().mean()), 4),
                    "pixel_l2": round(float(pix.mean()), 3), "fresh_pixel_l2": round(float(pix_fresh.mean()), 3),
                    "feature_l2": round(float(feat.mean()), 3),
                    "fresh_feature_l2": round(float(feat_fresh.mean()), 3)}
        return score

    def run_edit(setting, x, y, target, seed=args.seed):
        method, solver, strength, inject, row_cfg = setting
        return torch.stack(pipe.edit("image", [x[i] for i in range(len(x))], {"label": y.tolist()},
                                     {"label": target.tolist()}, steps=args.steps, solver=solver,
                                     cfg=cfg if row_cfg is None else row_cfg, strength=strength, inject=inject,
                                     inject_modules=["down1"] if inject else (), method=method,
                                     seed=seed)).clamp(-1, 1)

    def describe(setting) -> dict:
        method, solver, strength, inject, row_cfg = setting
        return {"method": method, "solver": solver, "strength": strength, "inject": inject,
                "cfg": cfg if row_cfg is None else row_cfg, "steps": args.steps}

    def key(r: dict) -> tuple:
        return r["method"], r["solver"], r["strength"], r["inject"], r["cfg"]

    chosen = ("flowedit", "euler", args.flowedit[0], 0, args.flowedit[1])
    # the table's row of that setting (a row with cfg None may be it), else a row added for it
    flowedit = next((s for s in SETTINGS if key(describe(s)) == key(describe(chosen))), chosen)
    settings = SETTINGS + [flowedit] * (flowedit not in SETTINGS)
    score = scorer(x, y, target)
    edits, made = [], {}
    for setting in settings:
        start = time.perf_counter()
        out = run_edit(setting, x, y, target)
        row = {**describe(setting), **score(out), "seconds": round(time.perf_counter() - start, 1)}
        edits.append(row)
        made[setting] = out
        print(f"edit {row}", flush=True)
    # the FlowEdit setting again, with other noise, and on sources no setting was chosen on
    x2, y2, target2 = sources(per)
    score2 = scorer(x2, y2, target2)
    repeats = []
    for first, (xs, ys, ts, scored) in enumerate([(x, y, target, score), (x2, y2, target2, score2)]):
        for seed in NOISE_SEEDS:
            start = time.perf_counter()
            # the first table already holds the edit of these sources with --seed
            out = made[flowedit] if first == 0 and seed == args.seed else run_edit(flowedit, xs, ys, ts, seed)
            row = {"sources": f"test images {first * per}..{(first + 1) * per - 1} of each class", "seed": seed,
                   **scored(out), "seconds": round(time.perf_counter() - start, 1)}
            repeats.append(row)
            print(f"repeat {row}", flush=True)
    # the sheet: two sets of three rows (one source of each class per row): sources, fireflow edits, FlowEdit edits
    rows = []
    for j in range(2):
        idx = [k * per + j for k in range(classes)]
        rows += [x[idx], made[INVERSION][idx], made[flowedit][idx]]
    grid = make_grid(torch.cat(rows), columns=classes)
    sheet_path = ROOT / "results" / f"{args.name}_sheet.png"
    ImageCodec().write(grid, sheet_path)

    def meets(r: dict) -> bool:
        return r["of_ceiling"] >= 0.9 and min(r["closer_pixels"], r["closer_features"]) >= 0.9

    best = max(recon, key=lambda s: recon[s]["psnr_mean"])
    inversion_row = next(r for r in edits if key(r) == key(describe(INVERSION)))
    flowedit_row = next(r for r in edits if key(r) == key(describe(flowedit)))
    done = {
        "reconstruction_psnr_30": recon[best]["psnr_mean"] >= 30,
        "inversion_meets_both_edit_targets": meets(inversion_row),
        "flowedit_meets_both_edit_targets": meets(flowedit_row),
        "flowedit_meets_both_on_every_repeat": all(meets(r) for r in repeats),
        "settings_meeting_both_edit_targets": [f"{r['method']} ({r['solver']}), strength {r['strength']:g}, inject "
                                               f"{r['inject']}, cfg {r['cfg']:g}" for r in edits if meets(r)],
    }
    payload = {"benchmark": args.name, "dataset": pipe.config.data.dataset, "script": "benchmarks/edit.py",
               "command": "python benchmarks/edit.py " + " ".join(sys.argv[1:]), "run": args.run,
               "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
               "run_train_steps": pipe.config.train.steps, "count": len(y), "steps": args.steps, "cfg": cfg,
               "classifier": {"test_accuracy": ceiling, "test_count": clf.test_count},
               "reconstruction": recon, "best_reconstruction": best, "edits": edits,
               "flowedit_repeats": {**describe(flowedit), "rows": repeats}, "done": done,
               "sheet": str(sheet_path.relative_to(ROOT.parent)), "seconds": timings}
    (ROOT / "results" / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload, ROOT / "RESULTS.md")


def write_markdown(p: dict, path: Path) -> None:
    ceiling = p["classifier"]["test_accuracy"]
    name = p.get("benchmark", "edit")
    what = {"fashion_mnist": "Fashion-MNIST test images"}.get(p.get("dataset"), "MNIST-5k test digits")
    lines = [f"## {name}", "",
             f"Editing {what} with the base flow `{p['run']}` "
             f"({p.get('run_train_steps', 0):,} training steps; docs/meanflow.md#editing-by-inversion), "
             "from the true label to another. "
             f"{p['count']} sources ({p['count'] // 10} per class), {p['steps']} steps. Figures in "
             f"`benchmarks/results/{name}.json`; made by `{p['command']}` on {p['machine']}.", "",
             "Reconstruction (same label in and out, cfg 1), PSNR on pixels in [-1, 1]:", "",
             "| solver | PSNR mean (dB) | PSNR min (dB) | RMS |", "| --- | ---: | ---: | ---: |"]
    for solver, r in p["reconstruction"].items():
        lines.append(f"| {solver} | {r['psnr_mean']:.2f} | {r['psnr_min']:.2f} | {r['rms']:.4f} |")
    lines += ["", "Edits to every other label in turn. *inversion*: invert under the source label, regenerate "
                  "under the target one; *flowedit*: no inversion, Euler steps along the difference of the target "
                  "and source fields on the source noised afresh. *target acc* = the metric "
                  f"classifier's accuracy on the target label (its ceiling: {ceiling:.3f} on real test images); "
                  "*closer (px / feat)* = fraction of sources whose edit is nearer to them than a fresh sample of the "
                  "target class, in pixel L2 / in the classifier's penultimate features with the source-to-target "
                  "class direction of its last layer removed (and with the span of all its class rows removed); "
                  "*inject* = first denoising steps given the source "
                  "outputs of the U-Net's first block `down1`; *cfg* = the target's guidance:", "",
              "| method | solver | strength | inject | cfg | target acc | of ceiling | closer px | closer feat | "
              "closer feat (no class rows) | pixel L2 (fresh) | feature L2 (fresh) | s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in p["edits"]:
        lines.append(f"| {r['method']} | {r['solver']} | {r['strength']:g} | {r['inject']} | {r['cfg']:g} | "
                     f"{r['target_accuracy']:.3f} | "
                     f"{r['of_ceiling']:.3f} | {r['closer_pixels']:.3f} | {r['closer_features']:.3f} | "
                     f"{r['closer_features_no_class_rows']:.3f} | "
                     f"{r['pixel_l2']:.2f} ({r['fresh_pixel_l2']:.2f}) | {r['feature_l2']:.2f} "
                     f"({r['fresh_feature_l2']:.2f}) | {r['seconds']:g} |")
    d = {k: "met" if v else "missed" for k, v in p["done"].items() if isinstance(v, bool)}
    both = p["done"]["settings_meeting_both_edit_targets"]
    h = p["flowedit_repeats"]
    lines += ["", f"flowedit, strength {h['strength']:g}, cfg {h['cfg']:g} (chosen on the sources above), again with "
                  "other noise draws and on as many other test digits:", "",
              "| sources | noise seed | of ceiling | closer px | closer feat | closer feat (no class rows) |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in h["rows"]:
        lines.append(f"| {r['sources']} | {r['seed']} | {r['of_ceiling']:.3f} | {r['closer_pixels']:.3f} | "
                     f"{r['closer_features']:.3f} | {r['closer_features_no_class_rows']:.3f} |")
    lines += ["", f"Targets: reconstruction PSNR >= 30 dB with the best solver ({p['best_reconstruction']}): "
                  f"**{d['reconstruction_psnr_30']}**. Target class at >= 90% of the ceiling and closer than a fresh "
                  f"sample on >= 90% of inputs in both measures: inversion (fireflow, strength 1): "
                  f"**{d['inversion_meets_both_edit_targets']}**; flowedit (strength {h['strength']:g}, cfg "
                  f"{h['cfg']:g}): **{d['flowedit_meets_both_edit_targets']}**, and on every repeat above: "
                  f"**{d['flowedit_meets_both_on_every_repeat']}**. Settings of the first table meeting both: "
                  f"{'; '.join(both) if both else 'none'}.", "",
              f"Sources (rows 1 and 4), their fireflow edits (rows 2 and 5) and their FlowEdit edits (rows 3 and 6): "
              f"![edit sheet]({Path(p['sheet']).relative_to('benchmarks')})", ""]
    replace_section(path, name, "\n".join(lines))


if __name__ == "__main__":
    main()
