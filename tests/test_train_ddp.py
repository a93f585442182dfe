"""Scale-out is Lightning's: 2-process DDP on CPU (gloo) ends with the same weights on both ranks."""

import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

SCRIPT = """
import sys
from safetensors.torch import save_file
from flowcore.registry import get_registry
from flowcore.train.config import load_config
from flowcore.train.pipeline import train

registry = get_registry()
config = load_config(sys.argv[1], [], registry)
module = train(config, registry)
state = {k: v.detach().contiguous() for k, v in module.net.state_dict().items()}
save_file(state, f"{config.out_dir}/rank{module.global_rank}.safetensors")
"""


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(out),
        "modalities": {"toy2d": {}}, "data": {"dataset": "moons", "options": {"size": 512}},
        "model": {"network": "mlp", "hidden": 32, "depth": 1, "time_dim": 16},
        "train": {"steps": 12, "batch_size": 32, "lr": 1.0e-2, "ema": 0, "accelerator": "cpu", "devices": 2,
                  "strategy": "ddp", "checkpoint_every": 6, "progress_bar": False, "cpu_threads": 1},
    }))
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    done = subprocess.run([sys.executable, str(script), str(cfg)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "world_size: 2" in done.stderr or "distributed_backend=gloo" in done.stderr, done.stderr[-2000:]
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    exported = {k[len("net."):]: v for k, v in load_file(str(out / "model.safetensors")).items()}
    assert rank0.keys() == rank1.keys() == exported.keys()
    for k in rank0:
        assert (rank0[k] == rank1[k]).all(), f"ranks differ in {k}"
        assert (rank0[k] == exported[k]).all(), f"exported weights differ from rank 0 in {k}"
    # and training happened: the zero-initialised output head has moved
    assert rank0["out.1.weight"].abs().sum() > 0
