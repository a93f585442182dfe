"""The protein modality through the core's pipeline: train, sample PDB files of asked lengths, eval JSON."""

import json

import pytest
import yaml

from flowcore.errors import ConfigError
from flowcore.train.config import load_config
from flowcore.train.pipeline import evaluate, sample, train
from flowcore.train.reflow import reflow_config
from flowcore_protein.metrics import METRICS
from flowcore_protein.pdbio import read_backbones

TRANSFORMER = {"network": "transformer",
               "transformer": {"hidden_size": 32, "num_heads": 2, "depth_double": 0, "depth_single": 1}}
#: the plugin's own network, self-conditioned, guided, with an attention sink and position updates, with
#: the auxiliary and clash losses, length-bucketed whole chains, the exp rotation schedule and the
#: guidance distilled on-policy (sampled unaided)
FRAMENET = {"network": "flowcore_protein.network:FrameNet",
            "options": {"hidden": 32, "depth": 2, "heads": 2, "self_condition": True, "attention_sink": True,
                        "position_updates": True, "guidance": {"clash": 1.0, "bond": 1.0, "t_max": 0.3}}}


@pytest.mark.slow
@pytest.mark.parametrize("model", [TRANSFORMER, FRAMENET], ids=["transformer", "framenet"])
def test_train_sample_eval_on_generated_backbones(tmp_path, registry, model):
    framenet = model is FRAMENET
    cfg_path = tmp_path / "protein.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(tmp_path / "run"),
        "modalities": {"protein": {"size": [30, 45], "tm_samples": 3, "aux_weight": 1.0 if framenet else 0.0,
                                   "clash_weight": 0.1 if framenet else 0.0,
                                   "rotation_schedule": "exp" if framenet else "linear"}},
        "data": {"dataset": "protein_ideal", "options": {"size": 16, "min_length": 25, "max_length": 50,
                                                          "crop": None if framenet else 20}},
        "model": model,
        "train": {"steps": 4, "batch_size": 4, "batch_tokens": 120 if framenet else None, "ema": 0,
                  "checkpoint_every": 4, "progress_bar": False, "cpu_threads": 1},
        "distill": {"start_step": 2, "samples": 2, "states": 2} if framenet else {},
        "sample": {"steps": 8, "unaided": framenet},
        "eval": {"split": "val", "count": 4, "batch_size": 4},
    }))
    cfg = load_config(cfg_path, registry=registry)
    module = train(cfg, registry)
    if framenet:  # steps 2 and 3 distil: one rollout of two chains (of the batch's length) feeds both
        assert module.distiller.rollouts == 1
        with pytest.raises(ConfigError, match="modalities.protein.size"):  # pairs need one layout
            train(reflow_config(cfg.out_dir, registry), registry)
    written = sample(cfg.out_dir, ["protein"], {}, tmp_path / "pdb", count=3, steps=4, registry=registry).paths
    pdbs = sorted(p for p in written if p.name.startswith("sample_0"))
    assert [len(read_backbones(p)[0]) for p in pdbs] == [30, 45, 30]
    report = evaluate(cfg.out_dir, tmp_path / "eval.json", steps=4, registry=registry)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert set(on_disk["metrics"]["protein"]) == set(METRICS) == set(report["metrics"]["protein"])
    assert all(isinstance(v, float) for v in on_disk["metrics"]["protein"].values())
