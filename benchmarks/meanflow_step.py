"""Seconds per MeanFlow training step with du/dt by a JVP and by a central difference, side by side.

    python benchmarks/meanflow_step.py                 # the example config's network and batch, one thread
    python benchmarks/meanflow_step.py --smoke         # a few steps (checks the script)

Both objectives (``flow.meanflow.derivative: jvp | difference``) train copies of the same
network from ``examples/configs/image_mnist_meanflow.yaml`` (warm start off: the timing does not
depend on the weights) on the same batch of MNIST digits. Steps alternate between the two, the
order flipping every pair, after warm-up pairs. Reported: the median seconds of a step (loss,
backward, Adam), the ratio jvp / difference, and the relative difference of the two targets'
(t - r) du/dt terms on the network after the timed steps. Writes
``benchmarks/results/meanflow_step.json`` and the ``## meanflow_step`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_md import replace_section  # noqa: E402

ROOT = Path(__file__).parent
CONFIG = ROOT.parent / "examples" / "configs" / "image_mnist_meanflow.yaml"


def config_and_module(derivative: str, threads: int):
    from flowcore.train.config import load_config
    from flowcore.train.module import FlowModule

    config = load_config(CONFIG, ["train.init_from=null", f"flow.meanflow.derivative={derivative}",
                                  f"train.cpu_threads={threads}"])
    torch.manual_seed(0)
    module = FlowModule(config)
    return config, module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.pairs, args.warmup = 2, 1
    torch.set_num_threads(args.threads)
    runs = {d: config_and_module(d, args.threads) for d in ("jvp", "difference")}
    config, first = runs["jvp"]
    runs["difference"][1].net.load_state_dict(first.net.state_dict())
    from flowcore.registry import get_registry
    from flowcore.train.data import build_split, loader

    batch = next(iter(loader(build_split(config, first.bundles, "train", get_registry()), first.bundles,
                             config.train.batch_size)))
    x0 = {n: b.tokens(batch[n], encoded=False) for n, b in first.bundles.items()}
    optims = {d: torch.optim.Adam(m.net.parameters(), lr=1e-4) for d, (_, m) in runs.items()}

    def step(d: str) -> float:
        module = runs[d][1]
        start = time.perf_counter()
        loss = module.objective(module.net, x0).loss
        loss.backward()
        optims[d].step()
        optims[d].zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times = {d: [] for d in runs}
    for k in range(args.warmup + args.pairs):
        order = ("jvp", "difference") if k % 2 == 0 else ("difference", "jvp")
        for d in order:
            s = step(d)
            if k >= args.warmup:
                times[d].append(s)
    median = {d: statistics.median(v) for d, v in times.items()}

    from flowcore.flow.meanflow import meanflow_target
    from flowcore.flow.path import expand_t

    net = runs["jvp"][1].net
    torch.manual_seed(1)
    b = x0["image"].batch_size
    t = torch.rand(b) * 0.9 + 0.1
    r = t * torch.rand(b)
    eps = torch.randn_like(x0["image"].values)
    x = x0["image"].values
    z = (1 - expand_t(t, x)) * x + expand_t(t, x) * eps
    v = {"image": eps - x0["image"].values}

    def u(zz, tt, rr):
        tokens = {"image": x0["image"].with_values(zz["image"]), "label": x0["label"]}
        zero = torch.zeros_like(tt)
        return {"image": net(tokens, {"image": tt, "label": zero}, {"image": rr, "label": zero})["image"]}

    exact = meanflow_target(u, {"image": z}, v, t, r)["image"]
    approx = meanflow_target(u, {"image": z}, v, t, r, step=config.flow.meanflow.difference_step)["image"]
    rel = float((approx - exact).norm() / (exact - v["image"]).norm())
    record = {"command": "python " + " ".join(sys.argv), "config": str(CONFIG.relative_to(ROOT.parent)),
              "batch_size": config.train.batch_size, "threads": args.threads, "pairs": args.pairs,
              "median_step_s": {d: round(s, 4) for d, s in median.items()},
              "jvp_over_difference": round(median["jvp"] / median["difference"], 3),
              "difference_step": config.flow.meanflow.difference_step, "target_term_rel_error": rel,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__}}
    if args.smoke:
        print(json.dumps(record, indent=1))
        return
    out = ROOT / "results" / "meanflow_step.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    section = "\n".join([
        "## meanflow_step", "",
        "Seconds per MeanFlow training step of `examples/configs/image_mnist_meanflow.yaml`'s ConvUNet "
        f"(batch {record['batch_size']}, {args.threads} thread(s), {args.pairs} alternating pairs after warm-up), "
        "with du/dt by forward-mode JVP (`flow.meanflow.derivative: jvp`) and by a central difference "
        f"(`difference`, step {record['difference_step']:g}):", "",
        "| derivative | median step (s) |", "| --- | ---: |",
        *(f"| {d} | {s:.4f} |" for d, s in median.items()), "",
        f"JVP / difference: **{record['jvp_over_difference']:.2f}x**. The difference's (t - r) du/dt term is "
        f"within {rel:.1e} (relative) of the JVP's on the same network.", "",
        f"`{record['command']}`; full numbers in `benchmarks/results/meanflow_step.json`.", ""])
    replace_section(ROOT / "RESULTS.md", "meanflow_step", section)
    print(section)


if __name__ == "__main__":
    main()
