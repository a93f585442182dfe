"""How much of each guidance term a distilled protein network has learned, at its own states.

    python benchmarks/protein_distill_diag.py RUN [--length 256] [--rollouts 3] [--out JSON]

RUN is a run trained with ``distill`` (its last checkpoint holds the frozen teacher). The EMA
network (the one ``flowcore sample`` uses) is rolled out alone, as the distillation does, and at
every kept state t <= the guidance's t_max the teacher's guidance correction is split into its
clash and bond terms, g_clash and g_bond (the teacher's guided minus unguided CA velocity, with
one term on). The part of g the student has learned is the projection of its own departure from
the teacher, v_student - v_teacher (both unguided), on g: <v_S - v_T, g> / <g, g>. 1 means the
network alone does what the guided teacher does; 0 that it has learned none of that term.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

import flowcore
from flowcore.modality import Tokens
from flowcore.train.distill import OnPolicyDistillation, unaided
from flowcore.train.sampling import make_velocity
from flowcore_protein.guidance import BackboneGuidance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--rollouts", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    run = flowcore.load(args.run, device="cpu")
    config, bundles = run.config, run.bundles
    student = run.net.eval()
    checkpoint = torch.load(args.run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    if "distill_teacher" not in checkpoint:
        raise SystemExit(f"{args.run}: its last checkpoint holds no distill_teacher (trained without distill?)")
    distiller = OnPolicyDistillation(config, bundles)
    distiller.start(student, checkpoint["distill_teacher"])
    teacher, own = distiller.teacher, distiller.teacher.guidance
    n, length = config.distill.samples, args.length
    layout = Tokens(torch.zeros(n, length, 7), torch.arange(length).expand(n, length)[..., None].clone(),
                    torch.ones(n, length, dtype=torch.bool))
    for _ in range(args.rollouts):
        distiller.rollout(student, {"protein": layout}, torch.device("cpu"))
    terms = {"clash": {"clash": own.clash, "bond": 0.0}, "bond": {"clash": 0.0, "bond": own.bond}}
    rows = []
    for layouts, t, x in distiller.queue:
        if t >= own.t_max:
            continue
        times = torch.full((n,), t)
        row = {"t": round(t, 4)}
        with torch.no_grad():
            with unaided(teacher):
                v_teacher = make_velocity(teacher, bundles, layouts, {}, None)(x, times)["protein"][..., 4:]
            with unaided(student):
                v_student = make_velocity(student, bundles, layouts, {}, None)(x, times)["protein"][..., 4:]
            for name, weights in terms.items():
                teacher.guidance = BackboneGuidance.from_options({**weights, "t_max": own.t_max}, name)
                g = make_velocity(teacher, bundles, layouts, {}, None)(x, times)["protein"][..., 4:] - v_teacher
                row[f"{name}_size"] = float((g ** 2).mean())
                row[f"{name}_learned"] = float(((v_student - v_teacher) * g).sum() / (g * g).sum().clamp_min(1e-12))
            teacher.guidance = own
        rows.append(row)
    rows.sort(key=lambda r: r["t"])
    summary = {}
    for lo, hi in ((0.0, 0.1), (0.1, 0.2), (0.2, own.t_max)):
        part = [r for r in rows if lo <= r["t"] < hi]
        if part:
            summary[f"t {lo:g}-{hi:g}"] = {k: sum(r[k] for r in part) / len(part) for k in part[0] if k != "t"} | {
                "states": len(part)}
    for band, s in summary.items():
        print(f"{band}: clash term learned {s['clash_learned']:.2f} (size {s['clash_size']:.2f}), "
              f"bond term learned {s['bond_learned']:.2f} (size {s['bond_size']:.2f}), {s['states']} states")
    if args.out:
        args.out.write_text(json.dumps({"command": "python " + " ".join(sys.argv),
                                        "machine": {"cpu": platform.processor() or platform.machine(),
                                                    "torch": torch.__version__, "threads": 2},
                                        "run": str(args.run), "length": length, "rollouts": args.rollouts,
                                        "summary": summary, "states": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
