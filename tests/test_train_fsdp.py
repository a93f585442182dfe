"""train.strategy: fsdp: 2-process sharded training on CPU (gloo) computes what 2-process DDP computes.

Both runs see the same batches on each rank and the same noise and times (one seed), so sharding
weights, gradients and optimizer state must not change the arithmetic: reduce-scatter then a
sharded AdamW step against all-reduce then a whole one. Each run trains 4 steps (gradient
clipping, EMA, a training-time preview at step 3), then resumes to 6 from its own checkpoint;
the FSDP run's checkpoint is a folder of shards, read back whole in one process here.
"""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flowcore.train.checkpoint import load_checkpoint, load_sharded_checkpoint
from flowcore.train.inference import load

SCRIPT = """
import sys
from safetensors.torch import save_file
from flowcore.registry import get_registry
from flowcore.train.config import load_config
from flowcore.train.pipeline import train
from flowcore.train.sharding import end_processes, full_state

registry = get_registry()
for steps in (4, 6):  # the second call resumes from the first one's last checkpoint
    config = load_config(sys.argv[1], [f"train.steps={steps}"], registry)
    module = train(config, registry)
    state = full_state(module.net)  # every rank: gathering shards is a collective
    if module.global_rank == 0:
        save_file({k: v.contiguous() for k, v in state.items()}, f"{config.out_dir}/net_step{steps}.safetensors")
end_processes()
"""


def start(tmp_path, strategy):
    out = tmp_path / strategy
    cfg = tmp_path / f"{strategy}.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(out),
        "modalities": {"toy2d": {}}, "data": {"dataset": "moons", "options": {"size": 512}},
        "model": {"network": "transformer", "transformer": {
            "hidden_size": 32, "num_heads": 2, "depth_double": 1, "depth_single": 1, "frequency_dim": 16}},
        "train": {"batch_size": 16, "lr": 1.0e-2, "ema": 0.9, "accelerator": "cpu", "devices": 2,
                  "strategy": strategy, "checkpoint_every": 3, "sample_every": 3, "progress_bar": False,
                  "cpu_threads": 1},
    }))
    script = tmp_path / "train_twice.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    log = open(tmp_path / f"{strategy}.log", "w")
    return out, subprocess.Popen([sys.executable, str(script), str(cfg)], cwd=tmp_path, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_trains_what_ddp_trains_and_saves_sharded_checkpoints(tmp_path):
    (fsdp, p1), (ddp, p2) = start(tmp_path, "fsdp"), start(tmp_path, "ddp")  # side by side: half the wall time
    for proc, name in ((p1, "fsdp"), (p2, "ddp")):
        assert proc.wait(timeout=240) == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    assert "Starting with 2 processes" in (tmp_path / "fsdp.log").read_text()

    # 4 uninterrupted steps: the same weights, bit for bit, and the same preview drawn at step 3
    sharded, replicated = load_file(str(fsdp / "net_step4.safetensors")), load_file(str(ddp / "net_step4.safetensors"))
    assert sharded.keys() == replicated.keys()
    for k in sharded:
        assert torch.equal(sharded[k], replicated[k]), k
    assert sharded["transformer.heads.toy2d.linear.weight"].abs().sum() > 0  # the zero-initialised head trained
    preview = "samples/step_000003/toy2d/sample.csv"
    assert (fsdp / preview).read_text() == (ddp / preview).read_text()

    # the sharded checkpoint: one file per process, read whole into this process
    last = fsdp / "checkpoints" / "last.ckpt"
    assert last.is_dir() and sorted(p.suffix for p in last.iterdir() if p.suffix == ".distcp") == [".distcp"] * 2
    whole, reference = load_sharded_checkpoint(last), load_checkpoint(ddp / "checkpoints" / "last.ckpt")
    assert whole["global_step"] == reference["global_step"] == 6
    net6 = load_file(str(fsdp / "net_step6.safetensors"))
    for k, v in net6.items():
        assert torch.equal(whole["state_dict"][f"net.{k}"], v), k  # what the shards hold is the trained net
    # resumed from the shards, the run goes on as DDP's does from its file (fp32 rounding apart: the
    # reduction order of a few gradients differs after a restore, which Adam's normalised step can show)
    for k, v in net6.items():
        torch.testing.assert_close(v, reference["state_dict"][f"net.{k}"], rtol=0, atol=1e-3)

    # the exported weights (gathered from the shards) load in one process like DDP's
    pipes = [load(run, device="cpu") for run in (fsdp, ddp)]
    for (k, a), b in zip(pipes[0].net.state_dict().items(), pipes[1].net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3, msg=k)
    ema_at_6 = {k: v for k, v in whole["state_dict"].items() if k.startswith("ema.net.")}
    for k, v in pipes[0].net.state_dict().items():
        assert torch.equal(v, ema_at_6[f"ema.net.{k}"]), k


@pytest.mark.parametrize("extra, named", [({"stage": "autoencoder"}, "autoencoder stage"),
                                          ({"distill": {"start_step": 2}}, "distill.start_step")])
def test_fsdp_refuses_what_it_does_not_shard(tmp_path, extra, named):
    from flowcore.errors import ConfigError
    from flowcore.train.config import from_dict

    raw = {"modalities": {"toy2d": {}}, "data": {"dataset": "moons"}, "train": {"strategy": "fsdp"}, **extra}
    with pytest.raises(ConfigError, match=f"train.strategy: fsdp .*{named}"):
        from_dict(raw)
