"""edit: editing MNIST-5k digits by inversion (`flowcore edit`, FlowPipeline.edit) with the base flow.

For --count real test images (the same number of each class) of the class-conditional run
--run (examples/configs/image_mnist.yaml):

  1. reconstruction: invert under the true label and regenerate under it (cfg 1) with euler,
     rf_solver and fireflow at --steps steps: PSNR on pixels in [-1, 1] (peak-to-peak 2), mean
     over images, and its minimum;
  2. edits to a new label (label + 1 + (i mod 9), mod 10: every other class in turn), inverted
     under the true label, regenerated under the new one with cfg --cfg, for each setting
     (solver, strength, re-injection of the U-Net's first block `down1`): the metric
     classifier's accuracy on the target class, as a fraction of its accuracy on real test
     images (the ceiling); and closeness to the source against a fresh sample of the target
     class (same count, the run's sampler: 8 Euler steps, cfg --cfg): pixel L2, and L2 between
     the classifier's 128 penultimate features with the class direction removed (the component
     along the difference of the source and target rows of its last linear layer), each the
     fraction of inputs whose edit is closer than the fresh sample (and, stricter on class
     content, the features with the span of every class row of that layer removed);
  3. a PNG sheet of source / edit pairs (benchmarks/results/edit_sheet.png).

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
SETTINGS = [  # (solver, strength, inject steps)
    ("euler", 1.0, 0), ("rf_solver", 1.0, 0), ("fireflow", 1.0, 0),
    ("fireflow", 1.0, 2), ("fireflow", 1.0, 4), ("rf_solver", 1.0, 2), ("fireflow", 0.8, 0), ("fireflow", 0.6, 0),
]


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
    pick = torch.cat([(labels == k).nonzero().squeeze(1)[:per] for k in range(classes)])
    x, y = images[pick].float(), labels[pick].long()
    order = torch.arange(len(y))
    target = (y + 1 + order % (classes - 1)) % classes
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

    start = time.perf_counter()
    fresh = torch.stack(pipe.generate("image", {"label": target.tolist()}, steps=8, solver="euler", cfg=cfg,
                                      seed=1)["image"]).clamp(-1, 1)
    timings["fresh"] = round(time.perf_counter() - start, 1)
    weight = clf.model.head[-1].weight.detach()  # [K, 128]

    basis = torch.linalg.qr(weight.T).Q  # [128, K]: the span of every class row of the last layer

    def feats(images, src_label, tgt_label):
        """Penultimate features without the source-to-target class direction, and without every class row."""
        f = clf.features(images)
        d = weight[tgt_label] - weight[src_label]
        d = d / d.norm(dim=1, keepdim=True)
        return f - (f * d).sum(1, keepdim=True) * d, f - (f @ basis) @ basis.T

    f_src, s_src = feats(x, y, target)
    f_fresh, s_fresh = feats(fresh, y, target)
    pix_fresh = (fresh - x).flatten(1).norm(dim=1)
    feat_fresh = (f_fresh - f_src).norm(dim=1)
    style_fresh = (s_fresh - s_src).norm(dim=1)
    ceiling = clf.test_accuracy
    edits = []
    sheet = None
    for solver, strength, inject in SETTINGS:
        start = time.perf_counter()
        out = torch.stack(pipe.edit("image", src, {"label": y.tolist()}, {"label": target.tolist()},
                                    steps=args.steps, solver=solver, cfg=cfg, strength=strength, inject=inject,
                                    inject_modules=["down1"] if inject else ())).clamp(-1, 1)
        seconds = round(time.perf_counter() - start, 1)
        acc = float((clf.predict(out) == target).double().mean())
        pix = (out - x).flatten(1).norm(dim=1)
        f_out, s_out = feats(out, y, target)
        feat, style = (f_out - f_src).norm(dim=1), (s_out - s_src).norm(dim=1)
        row = {"solver": solver, "strength": strength, "inject": inject, "cfg": cfg, "steps": args.steps,
               "target_accuracy": round(acc, 4), "of_ceiling": round(acc / ceiling, 4),
               "closer_pixels": round(float((pix < pix_fresh).double().mean()), 4),
               "closer_features": round(float((feat < feat_fresh).double().mean()), 4),
               "closer_features_no_class_rows": round(float((style < style_fresh).double().mean()), 4),
               "pixel_l2": round(float(pix.mean()), 3), "fresh_pixel_l2": round(float(pix_fresh.mean()), 3),
               "feature_l2": round(float(feat.mean()), 3), "fresh_feature_l2": round(float(feat_fresh.mean()), 3),
               "seconds": seconds}
        edits.append(row)
        print(f"edit {row}", flush=True)
        if (solver, strength, inject) == ("fireflow", 1.0, 0):
            sheet = out
    # the sheet: 4 rows of 10 pairs, source above its edit (one source of each class per row)
    cols = []
    for j in range(2):
        idx = [k * per + j for k in range(classes)]
        cols += [x[idx], sheet[idx]]
    grid = make_grid(torch.cat(cols), columns=classes)
    sheet_path = ROOT / "results" / "edit_sheet.png"
    ImageCodec().write(grid, sheet_path)

    best = max(recon, key=lambda s: recon[s]["psnr_mean"])
    main_row = next(r for r in edits if (r["solver"], r["strength"], r["inject"]) == ("fireflow", 1.0, 0))
    done = {
        "reconstruction_psnr_30": recon[best]["psnr_mean"] >= 30,
        "target_at_90pct_of_ceiling": main_row["of_ceiling"] >= 0.9,
        "closer_than_fresh_90pct": min(main_row["closer_pixels"], main_row["closer_features"]) >= 0.9,
    }
    meets = [r for r in edits if r["of_ceiling"] >= 0.9 and min(r["closer_pixels"], r["closer_features"]) >= 0.9]
    done["settings_meeting_both_edit_targets"] = [f"{r['solver']}, strength {r['strength']:g}, inject {r['inject']}"
                                                  for r in meets]
    payload = {"benchmark": "edit", "script": "benchmarks/edit.py",
               "command": "python benchmarks/edit.py " + " ".join(sys.argv[1:]), "run": args.run,
               "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
               "count": len(y), "steps": args.steps, "cfg": cfg,
               "classifier": {"test_accuracy": ceiling, "test_count": clf.test_count},
               "reconstruction": recon, "best_reconstruction": best, "edits": edits, "done": done,
               "sheet": str(sheet_path.relative_to(ROOT.parent)), "seconds": timings}
    (ROOT / "results" / "edit.json").write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload, ROOT / "RESULTS.md")


def write_markdown(p: dict, path: Path) -> None:
    ceiling = p["classifier"]["test_accuracy"]
    lines = ["## edit", "",
             f"Editing MNIST-5k test digits by inversion with the base flow `{p['run']}` "
             "(examples/configs/image_mnist.yaml; docs/flow.md#editing): invert under the true label, regenerate "
             f"under another. {p['count']} sources ({p['count'] // 10} per class), {p['steps']} steps. Figures in "
             f"`benchmarks/results/edit.json`; made by `{p['command']}` on {p['machine']}.", "",
             "Reconstruction (same label in and out, cfg 1), PSNR on pixels in [-1, 1]:", "",
             "| solver | PSNR mean (dB) | PSNR min (dB) | RMS |", "| --- | ---: | ---: | ---: |"]
    for solver, r in p["reconstruction"].items():
        lines.append(f"| {solver} | {r['psnr_mean']:.2f} | {r['psnr_min']:.2f} | {r['rms']:.4f} |")
    lines += ["", f"Edits to every other label in turn, target cfg {p['cfg']:g}. *target acc* = the metric "
                  f"classifier's accuracy on the target label (its ceiling: {ceiling:.3f} on real test images); "
                  "*closer (px / feat)* = fraction of sources whose edit is nearer to them than a fresh sample of the "
                  "target class, in pixel L2 / in the classifier's penultimate features with the source-to-target "
                  "class direction of its last layer removed (and with the span of all its class rows removed); "
                  "*inject* = first denoising steps given the source "
                  "outputs of the U-Net's first block `down1`:", "",
              "| solver | strength | inject | target acc | of ceiling | closer px | closer feat | closer feat "
              "(no class rows) | pixel L2 (fresh) | feature L2 (fresh) | s |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in p["edits"]:
        lines.append(f"| {r['solver']} | {r['strength']:g} | {r['inject']} | {r['target_accuracy']:.3f} | "
                     f"{r['of_ceiling']:.3f} | {r['closer_pixels']:.3f} | {r['closer_features']:.3f} | "
                     f"{r['closer_features_no_class_rows']:.3f} | "
                     f"{r['pixel_l2']:.2f} ({r['fresh_pixel_l2']:.2f}) | {r['feature_l2']:.2f} "
                     f"({r['fresh_feature_l2']:.2f}) | {r['seconds']:g} |")
    d = {k: "met" if v else "missed" for k, v in p["done"].items() if isinstance(v, bool)}
    both = p["done"]["settings_meeting_both_edit_targets"]
    lines += ["", f"Targets (fireflow, strength 1, no injection for the edits): reconstruction PSNR >= 30 dB with "
                  f"the best solver ({p['best_reconstruction']}): **{d['reconstruction_psnr_30']}**; "
                  f"target class at >= 90% of the ceiling: **{d['target_at_90pct_of_ceiling']}**; "
                  f"closer than a fresh sample on >= 90% of inputs in both measures: "
                  f"**{d['closer_than_fresh_90pct']}**. Settings meeting both edit targets (class and closeness): "
                  f"{'; '.join(both) if both else 'none'}.", "",
              f"Sources (rows 1 and 3) and their fireflow edits (rows 2 and 4): "
              f"![edit sheet]({Path(p['sheet']).relative_to('benchmarks')})", ""]
    replace_section(path, "edit", "\n".join(lines))


if __name__ == "__main__":
    main()
