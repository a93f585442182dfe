"""The shape plugin's autoencoder and class-conditional generation, against held-out real shapes.

    python benchmarks/shape.py --ae-run runs/shape_autoencoder    # after examples/configs/shape_autoencoder.yaml
    python benchmarks/shape.py --run runs/shape_primitives        # after examples/configs/shape_primitives.yaml

Reconstruction (--ae-run): held-out primitives (the test split, ``--recon-count`` shapes, classes
in turn) and the CGAL meshes of the val and test splits (not augmented) are encoded and decoded
(marching cubes at ``--resolution``, coarse-to-fine); Chamfer distance and F-score at 0.02 between
10,000 surface points of the real and the decoded mesh, and volume IoU of the real occupancy and
the decoder's (logit > 0) at the shape's uniform queries. It also times latent -> mesh at 128^3
with and without the coarse pass.

Generation (--run): ``--per-class`` samples of each class (Euler, ``--steps``, guidance ``--cfg``)
against as many held-out test shapes of the class: MMD, COV and 1-NNA with the Chamfer distance on
1,024 points (PointFlow's definitions, per class, then averaged), and the class accuracy of the
plugin's PointNet on the samples against its accuracy on the real test shapes.

It writes benchmarks/results/shape.json (each part updates its own key), the "## shape" section of
benchmarks/RESULTS.md and preview sheets (one shape per class, three views): generated in
benchmarks/results/shape_samples.png, real in benchmarks/results/shape_real.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore
from flowcore.io import dumps_json, write_text_atomic
from flowcore.registry import get_registry
from flowcore.train.bundle import load_autoencoder_run
from flowcore.train.config import load_config
from flowcore_shape import metrics as M
from flowcore_shape.classifier import load_classifier
from flowcore_shape.extract import extract_mesh
from flowcore_shape.primitives import CLASSES
from flowcore_shape.render import preview_sheet, ray_engine

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "shape.json"
POINTS = 10_000


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def machine(threads: int) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": threads,
            "torch": torch.__version__, "ray_engine": ray_engine()}


def trained_steps(run: str, planned: int) -> int:
    """The step of the run's last checkpoint (a run stopped early exports that step's weights), else ``planned``."""
    path = Path(run) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return planned
    return int(torch.load(path, map_location="cpu", weights_only=False).get("global_step", planned))


def load_ae(run: str):
    """The shape modality and its trained autoencoder from an autoencoder run directory."""
    config = load_config(Path(run) / "config.yaml")
    modality = get_registry().modality("shape", **config.modalities["shape"].options)
    ae = modality.autoencoder()
    load_autoencoder_run(ae, run, "shape", str(run))
    return modality, ae.eval(), config


@torch.no_grad()
def reconstruct(modality, ae, samples: list, resolution: int, coarse: int) -> dict:
    """Chamfer, F-score and IoU of each sample against its reconstruction (means and per-shape lists)."""
    ae.resolution, ae.coarse = resolution, coarse
    rows = []
    for i, s in enumerate(samples):
        batch = modality.collate([s])
        latent = ae.encode(batch)
        context = ae.context(ae.unscale(latent))
        recon = ae.decode(latent)["meshes"][0]
        sup = modality.supervise(s)
        uniform = sup["queries"][: len(sup["queries"]) - len(sup["queries"]) // 2]
        predicted = ae.occupancy_logits(context, uniform[None])[0] > 0
        real_pts = M.surface_points([s], POINTS, seed=i)[0]
        made_pts = M.surface_points([recon], POINTS, seed=i)[0]
        rows.append({"chamfer": M.chamfer(real_pts, made_pts), "fscore": M.fscore(real_pts, made_pts),
                     "iou": M.volume_iou(sup["occupancy"][: len(uniform)] > 0.5, predicted),
                     "faces": len(recon["faces"])})
        if (i + 1) % 16 == 0:
            log(f"  reconstructed {i + 1}/{len(samples)}")
    return {"shapes": len(rows), **{k: round(float(np.mean([r[k] for r in rows])), 5)
                                    for k in ("chamfer", "fscore", "iou")},
            "chamfer_median": round(float(np.median([r["chamfer"] for r in rows])), 5),
            "empty_meshes": sum(r["faces"] == 0 for r in rows)}


@torch.no_grad()
def mesh_timing(ae, latent: torch.Tensor) -> dict:
    """Seconds from one latent set to a mesh at 128^3, with a 32^3 coarse pass and without."""
    context = ae.context(ae.unscale(latent[:1]))[0]

    def fn(p):
        return ae.occupancy_logits(context[None], p[None])[0]

    out = {}
    for name, coarse in (("coarse_to_fine", 32), ("full_grid", 0)):
        begun = time.perf_counter()
        v, f = extract_mesh(fn, 128, coarse)
        out[name] = {"seconds": round(time.perf_counter() - begun, 2), "faces": len(f)}
    return out


def autoencoder_part(args) -> dict:
    started = time.perf_counter()
    modality, ae, config = load_ae(args.ae_run)
    registry = get_registry()
    test = registry.dataset("primitives").build("test")
    prims = [test[i]["shape"] for i in range(args.recon_count)]
    log(f"primitives: reconstructing {len(prims)} held-out shapes at {args.resolution}^3")
    record = {"run": str(args.ae_run), "steps": trained_steps(args.ae_run, config.train.steps),
              "resolution": args.resolution,
              "options": config.modalities["shape"].options,
              "primitives": reconstruct(modality, ae, prims, args.resolution, args.resolution // 4)}
    log(record["primitives"])
    cgal = []
    for split in ("val", "test") if args.cgal else ():
        try:
            ds = registry.dataset("cgal").build(split, queries=512)  # winding numbers cost F x Q
        except Exception as exc:  # libcgal-demo missing: report it rather than fail the whole benchmark
            record["cgal"] = {"skipped": str(exc)}
            break
        cgal += [(ds.names[i], ds[i]["shape"]) for i in range(len(ds))]
    if cgal:
        log(f"cgal: reconstructing {len(cgal)} meshes")
        record["cgal"] = {"meshes": [n for n, _ in cgal],
                          **reconstruct(modality, ae, [s for _, s in cgal], args.resolution, args.resolution // 4)}
        log(record["cgal"])
    latent = ae.encode(modality.collate(prims[:1]))
    record["latent_to_mesh_128"] = mesh_timing(ae, latent)
    log(record["latent_to_mesh_128"])
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def generation_part(args) -> dict:
    started = time.perf_counter()
    pipe = flowcore.load(args.run, device="cpu")
    bundle = pipe.bundles["shape"]
    bundle.autoencoder.resolution, bundle.autoencoder.coarse = args.resolution, args.resolution // 4
    cfg = pipe.config.sample.cfg if args.cfg is None else args.cfg
    test = get_registry().dataset("primitives").build("test")
    labels = test.arrays["labels"]
    classifier = load_classifier()
    log(f"classifier: test accuracy {classifier.test_accuracy:.4f} on {classifier.test_count} real shapes")
    asked = [c for c in range(len(CLASSES)) for _ in range(args.per_class)]
    begun = time.perf_counter()
    made = pipe.generate("shape", {"label": asked}, len(asked), batch_size=len(CLASSES) * 4, steps=args.steps,
                         solver="euler", cfg=cfg, seed=0)["shape"]
    seconds = time.perf_counter() - begun
    log(f"generated {len(made)} shapes in {seconds:.0f} s")
    predicted = np.array(classifier.predict(made))
    accuracy = float(np.mean(predicted == np.array(asked)))
    per_class = {}
    for c, name in enumerate(CLASSES):
        real = [test[i]["shape"] for i in np.flatnonzero(labels == c)[: args.per_class]]
        mine = made[c * args.per_class: (c + 1) * args.per_class]
        scores = M.generation_scores(M.surface_points(real, M.SET_POINTS), M.surface_points(mine, M.SET_POINTS, 1))
        per_class[name] = {k: round(v, 5) for k, v in scores.items()}
        per_class[name]["accuracy"] = round(float(np.mean(predicted[c * args.per_class: (c + 1) * args.per_class]
                                                          == c)), 3)
        log(name, per_class[name])
    preview_sheet([made[c * args.per_class] for c in range(len(CLASSES))], ROOT / "results" / "shape_samples.png")
    first_real = [test[int(np.flatnonzero(labels == c)[0])]["shape"] for c in range(len(CLASSES))]
    preview_sheet(first_real, ROOT / "results" / "shape_real.png")
    mean = {k: round(float(np.mean([v[k] for v in per_class.values()])), 5) for k in ("mmd", "cov", "nna")}
    return {"run": str(args.run), "steps_trained": trained_steps(args.run, pipe.config.train.steps),
            "sampling_steps": args.steps, "cfg": cfg,
            "per_class_samples": args.per_class, "resolution": args.resolution,
            "classifier": {"test_accuracy": round(classifier.test_accuracy, 4), "test_count": classifier.test_count},
            "class_accuracy": round(accuracy, 4),
            "relative_accuracy": round(accuracy / classifier.test_accuracy, 4),
            "mean_over_classes": mean, "per_class": per_class,
            "generation_seconds": round(seconds, 1), "seconds": round(time.perf_counter() - started, 1)}


def results_md(record: dict) -> str:
    lines = ["## shape", "",
             "3D shapes (plugins/shape): the VecSet autoencoder and class-conditional generation on the "
             "procedural primitives (8 classes), scored without downloaded networks "
             f"({record['machine']['cores']} shared CPU cores, "
             f"ray casting: {record['machine']['ray_engine']}).", ""]
    ae = record.get("autoencoder")
    if ae:
        lines += [f"Reconstruction ({ae['steps']} autoencoder steps; marching cubes at {ae['resolution']}^3, "
                  "coarse-to-fine; Chamfer = mean of the two mean nearest-point distances on 10,000 points, "
                  "unit cube):", "",
                  "| shapes | count | Chamfer | F-score@0.02 | volume IoU | empty meshes |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name in ("primitives", "cgal"):
            r = ae.get(name, {})
            if "chamfer" in r:
                lines.append(f"| {name} (held out) | {r['shapes']} | {r['chamfer']:.4f} | {r['fscore']:.3f} | "
                             f"{r['iou']:.3f} | {r['empty_meshes']} |")
        lines += ["", f"Command: `{ae.get('command', record.get('command', ''))}`."]
        if "training" in ae:
            lines += ["", f"Autoencoder training: {ae['training']}."]
        t = ae["latent_to_mesh_128"]
        lines += ["", f"Latent to mesh at 128^3: {t['coarse_to_fine']['seconds']} s coarse-to-fine (32^3 first), "
                  f"{t['full_grid']['seconds']} s on the full grid.", ""]
    gen = record.get("generation")
    if gen:
        m = gen["mean_over_classes"]
        lines += [f"Generation ({gen['steps_trained']} flow steps; {gen['per_class_samples']} samples per class, "
                  f"Euler {gen['sampling_steps']} steps, cfg {gen['cfg']}; against as many held-out shapes per "
                  "class; Chamfer on 1,024 points; means over classes):", "",
                  "| MMD | COV | 1-NNA (50% ideal) | class accuracy | classifier on real | ratio |",
                  "| --- | --- | --- | --- | --- | --- |",
                  f"| {m['mmd']:.4f} | {m['cov']:.3f} | {m['nna']:.3f} | {gen['class_accuracy']:.3f} | "
                  f"{gen['classifier']['test_accuracy']:.3f} | {gen['relative_accuracy']:.3f} |", "",
                  f"Command: `{gen.get('command', record.get('command', ''))}`.", "",
                  *([f"Flow training: {gen['training']}.", ""] if "training" in gen else []),
                  "Samples, one per class (box, sphere, cylinder, cone, torus, capsule, union, difference; "
                  "three views each): results/shape_samples.png; real test shapes of each class beside them: "
                  "results/shape_real.png.", ""]
    return "\n".join(lines)


def command_line(argv: list[str]) -> str:
    """The benchmark's command as run, less the training sentences (they are recorded apart)."""
    notes, out, skip = ("--ae-training", "--run-training"), [], False
    for a in argv:
        if not skip and a not in notes and not a.startswith(tuple(n + "=" for n in notes)):
            out.append(a)
        skip = a in notes
    return " ".join(["python benchmarks/shape.py", *out])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ae-run", help="autoencoder run directory")
    p.add_argument("--run", help="class-conditional flow run directory (examples/configs/shape_primitives.yaml)")
    p.add_argument("--recon-count", type=int, default=64)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--cfg", type=float)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-cgal", dest="cgal", action="store_false", help="skip the CGAL meshes")
    p.add_argument("--ae-training", help="how the autoencoder run was trained (a sentence for RESULTS.md)")
    p.add_argument("--run-training", help="how the flow run was trained (a sentence for RESULTS.md)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    record["command"] = command_line(sys.argv[1:])
    record["machine"] = machine(args.threads)
    parts = (("autoencoder", autoencoder_part, args.ae_run, args.ae_training),
             ("generation", generation_part, args.run, args.run_training))
    for key, part, wanted, training in parts:
        if wanted:
            record[key] = part(args)
            record[key]["command"] = record["command"]
            if training:
                record[key]["training"] = training
            write_text_atomic(RESULTS, dumps_json(record, indent=1) + "\n")  # each part lands as soon as it is done
            replace_section(ROOT / "RESULTS.md", "shape", results_md(record))
    print(dumps_json(record, indent=1))


if __name__ == "__main__":
    main()
