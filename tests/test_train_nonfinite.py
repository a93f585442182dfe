"""A diverging run stops with an error and keeps its last finite weights; NaN never reaches a file."""

import json
import math
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from flowcore.cli import main
from flowcore.errors import NonFiniteError
from flowcore.io import dumps_json
from flowcore.modality import Tokens
from flowcore.train import checkpoint as ckpt
from flowcore.train.module import FlowModule

TINY = {"network": "mlp", "hidden": 32, "depth": 1, "time_dim": 16}


def config_file(tmp_path, **train):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"), "modalities": {"toy2d": {}},
        "data": {"dataset": "moons", "options": {"size": 600}}, "model": TINY,
        "train": {"steps": 20, "batch_size": 128, "lr": 5.0e-3, "ema": 0.9, "checkpoint_every": 1, "log_every": 1,
                  "sample_every": 0, "progress_bar": False, "cpu_threads": 1, **train},
    }))
    return path


def all_finite(tensors) -> bool:
    return ckpt.first_nonfinite(tensors) is None


def test_a_diverging_run_exits_non_zero_and_keeps_its_last_finite_checkpoint(tmp_path, capsys, one_thread):
    cfg = config_file(tmp_path, optimizer="sgd", lr=1.0e4, grad_clip=0)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    # sgd at lr 1e4: step 0 is finite, step 1 blows the weights up, step 2's loss is NaN
    assert "step 2: the loss of modality 'toy2d' is nan" in err
    assert "train.lr 10000" in err and "train.grad_clip off" in err
    run = tmp_path / "run"
    last = ckpt.load_checkpoint(run / ckpt.LAST)
    assert last["global_step"] == 2  # written after step 1; step 2 never updated anything
    assert all_finite(last["state_dict"]) and all_finite(last["optimizer_states"])
    weights = load_file(str(run / ckpt.WEIGHTS))
    assert all_finite(weights)
    # the exported weights are the EMA network of that checkpoint
    assert all(torch.equal(v, last["state_dict"][f"ema.{k}"]) for k, v in weights.items())


def nan_data_at(monkeypatch, bad) -> dict[int, dict[str, torch.Tensor]]:
    """The training batches of the steps ``bad(step)`` picks are NaN; returns the weights each step starts from."""
    training_step = FlowModule.training_step
    seen = {}

    def poisoned(self, batch, batch_idx):
        seen[self.global_step] = {k: v.clone() for k, v in self.net.state_dict().items()}
        if bad(self.global_step):
            batch = {n: v * math.nan for n, v in batch.items()}
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(FlowModule, "training_step", poisoned)
    return seen


def test_skip_nonfinite_skips_a_bad_step_without_applying_it(tmp_path, registry, monkeypatch, capsys, one_thread):
    from flowcore.train.config import load_config
    from flowcore.train.pipeline import train

    seen = nan_data_at(monkeypatch, lambda step: step == 3)
    train(load_config(config_file(tmp_path, steps=6, skip_nonfinite=1), registry=registry), registry)
    assert "warning: step 3: the loss of modality 'toy2d' is nan; the step is skipped" in capsys.readouterr().err
    assert all(torch.equal(seen[3][k], v) for k, v in seen[4].items())  # step 3 changed no weight
    assert not all(torch.equal(seen[2][k], v) for k, v in seen[3].items())  # (a finite step does)
    assert all_finite(load_file(str(tmp_path / "run" / ckpt.WEIGHTS)))

    # every step NaN from now on: resumed with the one skip it saved, it skips one more and stops
    nan_data_at(monkeypatch, lambda step: True)
    config = load_config(config_file(tmp_path, steps=12, skip_nonfinite=2), registry=registry)
    with pytest.raises(NonFiniteError, match=r"^step 7: .* is nan \(after skipping 2 such steps\)"):
        train(config, registry)


def test_nonfinite_weights_and_checkpoints_are_never_written(tmp_path):
    path = tmp_path / "model.safetensors"
    ckpt.write_weights(path, {"net.w": torch.ones(3)})
    with pytest.raises(NonFiniteError, match=r"model.safetensors not written: net.w holds NaN"):
        ckpt.write_weights(path, {"net.w": torch.tensor([1.0, math.nan, 2.0])})
    assert torch.equal(load_file(str(path))["net.w"], torch.ones(3))

    io = ckpt.AtomicCheckpointIO()
    good = {"state_dict": {"w": torch.ones(2)}, "optimizer_states": [{"state": {0: {"m": torch.zeros(2)}}}],
            "callbacks": {"ModelCheckpoint": {"kth_value": torch.tensor(math.inf)}}}  # an unset best score is fine
    io.save_checkpoint(good, tmp_path / "last.ckpt")
    bad = {**good, "optimizer_states": [{"state": {0: {"m": torch.tensor([0.0, math.inf])}}}]}
    with pytest.raises(NonFiniteError, match=r"optimizer_states.0.state.0.m holds NaN or infinite"):
        io.save_checkpoint(bad, tmp_path / "last.ckpt")
    assert all_finite(torch.load(tmp_path / "last.ckpt", weights_only=True)["optimizer_states"])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def finite_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finite")
    torch.set_num_threads(1)
    assert main(["train", str(config_file(tmp, steps=4, checkpoint_every=4))]) == 0
    return tmp / "run"


def test_sampling_a_run_whose_weights_hold_nan_is_refused(finite_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finite_run, run)
    weights = load_file(str(run / ckpt.WEIGHTS))
    name = sorted(weights)[0]
    weights[name][0] = math.nan
    save_file(weights, str(run / ckpt.WEIGHTS))
    out = tmp_path / "samples"
    assert main(["sample", str(run), "--make", "toy2d", "--count", "4", "--out", str(out)]) == 2
    assert f"{name} holds NaN or infinite values: the run diverged" in capsys.readouterr().err
    assert not out.exists()
    assert main(["eval", str(run), "--count", "8", "--out", str(tmp_path / "eval.json")]) == 2
    assert not (tmp_path / "eval.json").exists()


def test_nonfinite_samples_are_refused_naming_the_modality(finite_run):
    from flowcore.train.inference import load

    pipe = load(finite_run, device="cpu")
    tokens = Tokens(torch.tensor([[[0.0, math.inf]]]), torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(NonFiniteError, match=r"run: the generated 'toy2d' samples hold NaN or infinite values"):
        pipe.finite({"toy2d": tokens}, pipe.options)
    padded = Tokens(torch.tensor([[[0.0, 1.0], [math.nan, 0.0]]]), torch.zeros(1, 2, 1),
                    torch.tensor([[True, False]]))
    assert pipe.finite({"toy2d": padded}, pipe.options)  # padding is never a sample


def test_eval_json_is_strict_a_nonfinite_number_is_null(finite_run, tmp_path, monkeypatch):
    from flowcore.train.inference import FlowPipeline
    from flowcore.train.pipeline import evaluate

    nan = {"a": [1.5, math.nan, -math.inf], "b": {"c": math.inf}}
    assert dumps_json(nan) == '{"a": [1.5, null, null], "b": {"c": null}}'
    monkeypatch.setattr(FlowPipeline, "loss", lambda self, items, seed=0: math.nan)
    report = evaluate(finite_run, tmp_path / "eval.json", count=8, steps=2, device="cpu")

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    written = json.loads((tmp_path / "eval.json").read_text(), parse_constant=refuse)
    assert written["flow_loss"] is None and report["flow_loss"] is None
