"""Any-to-any plumbing: datasets paired by a shared sample, eval directions, class scoring, --cfg per condition."""

import argparse
from types import SimpleNamespace

import pytest
import torch

from flowcore.cli_flags import _cfg
from flowcore.errors import ConfigError, DataError
from flowcore.train.config import from_dict, parse_direction
from flowcore.train.data import PairedItems, build_split
from flowcore.train.pipeline import ClassScorer, direction_key, eval_tasks


def items(kind: str, labels: list[int]) -> list[dict]:
    return [{kind: f"{kind}{j}", "label": c} for j, c in enumerate(labels)]


def test_paired_items_share_the_key_and_are_drawn_at_random():
    images = items("image", [0, 1, 2, 0, 1, 2, 0, 1])
    sounds = items("audio", [2, 2, 1, 0, 1, 0, 2, 1, 0, 0])
    paired = PairedItems([images, sounds], ["digits", "speech"], "label", seed=0)
    assert len(paired) == len(images)
    for i in range(len(paired)):
        item = paired[i]
        assert item["image"] == f"image{i}"
        partner = int(item["audio"][5:])
        assert sounds[partner]["label"] == images[i]["label"] == item["label"]
    assert "digits item 3 + speech item" in paired.item_source(3)
    # the same seed gives the same pairs; each class's partners spread over its items
    again = PairedItems([images, sounds], ["digits", "speech"], "label", seed=0)
    assert again.partners == paired.partners
    draws = PairedItems([items("image", [0] * 400), sounds], ["a", "b"], "label", seed=1).partners[0]
    assert set(draws) == {3, 5, 8, 9}  # every clip of class 0 is drawn


def test_fresh_pairs_draw_a_new_partner_of_the_same_key_each_read():
    images = items("image", [0, 1] * 4)
    sounds = items("audio", [0, 1] * 10)
    paired = PairedItems([images, sounds], ["digits", "speech"], "label", seed=0, fresh=True)
    torch.manual_seed(0)
    seen = {i: set() for i in range(len(images))}
    for _ in range(60):
        for i in range(len(images)):
            item = paired[i]
            partner = int(item["audio"][5:])
            assert sounds[partner]["label"] == item["label"] == images[i]["label"]
            seen[i].add(partner)
    # 60 reads of each item reach every one of the 10 clips of its class
    assert all(len(s) == 10 for s in seen.values())
    assert "a speech item of the same label" in paired.item_source(0)


def test_paired_items_name_the_unpairable():
    with pytest.raises(DataError, match="speech has no item whose 'label' is 3"):
        PairedItems([items("image", [0, 3]), items("audio", [0, 1])], ["digits", "speech"], "label")
    with pytest.raises(DataError, match="speech item 0 has no 'label'"):
        PairedItems([items("image", [0]), [{"audio": 1}]], ["digits", "speech"], "label")


def paired_config(registry, second=None, **data):
    second = second or {"size": 32, "seed": 5}
    raw = {"modalities": {"toy2d": {"role": "any"}, "label": {"role": "any", "num_classes": 8}},
           "data": {"paired": [{"dataset": "eight_gaussians_labeled", "options": {"size": 64}},
                               {"dataset": "eight_gaussians_labeled", "options": second}],
                    **data}, "model": {"network": "mlp"}}
    return from_dict(raw, "cfg.yaml", registry)


def test_paired_config_is_checked_and_builds(registry):
    from flowcore.train.bundle import build_bundles

    config = paired_config(registry)
    ds = build_split(config, build_bundles(config, registry), "train", registry)
    assert len(ds) == 64 and {"toy2d", "label"} <= set(ds[0])
    with pytest.raises(ConfigError, match="data.pair_by: dataset 'eight_gaussians_labeled'.*not 'colour'"):
        paired_config(registry, pair_by="colour")
    with pytest.raises(ConfigError, match=r"data.paired\[1\].options.*sise"):
        paired_config(registry, second={"sise": 3})
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        paired_config(registry, dataset="moons")
    with pytest.raises(ConfigError, match="needs two datasets"):
        from_dict({"modalities": {"toy2d": {}}, "data": {"paired": [{"dataset": "moons"}]}}, "cfg.yaml", registry)


@pytest.mark.parametrize("text, parsed", [
    ("image|label", (["image"], ["label"])),
    ("image, audio | label,text", (["image", "audio"], ["label", "text"])),
    ("image", (["image"], [])),
])
def test_directions_parse(text, parsed):
    assert parse_direction(text) == parsed
    assert direction_key(*parsed) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "|label", "image|", "a|b|c"])
def test_bad_directions_are_refused(text):
    with pytest.raises(ValueError, match="made|given"):
        parse_direction(text)


def test_directions_are_checked_against_roles(registry):
    raw = {"modalities": {"toy2d": {}, "label": {"role": "condition", "num_classes": 8}},
           "data": {"dataset": "eight_gaussians_labeled"}, "model": {"network": "mlp"}}
    config = from_dict({**raw, "eval": {"directions": ["toy2d|label", "toy2d"]}}, "cfg.yaml", registry)
    assert eval_tasks(config) == [(["toy2d"], ["label"]), (["toy2d"], [])]
    assert eval_tasks(config, ["toy2d"]) == [(["toy2d"], [])]
    for bad, message in [("label|toy2d", "'label' has role 'condition'"), ("toy2d|toy2d", "both made and given"),
                         ("image|label", "no modality 'image'")]:
        with pytest.raises(ConfigError, match=rf"eval.directions\[0\]: .*{message}"):
            from_dict({**raw, "eval": {"directions": [bad]}}, "cfg.yaml", registry)


class Classifying:
    """A modality whose classifier reads a sample's class from its first character."""

    def __init__(self, metric_value: float = 0.5):
        self.metric_value = metric_value

    def classify(self, samples):
        return [int(s[0]) for s in samples]

    def metrics(self):
        return {"m": lambda real, generated: self.metric_value}


def test_class_scores_agreement_and_ceilings():
    bundles = {"a": SimpleNamespace(modality=Classifying()), "b": SimpleNamespace(modality=Classifying()),
               "label": SimpleNamespace(modality=SimpleNamespace(classify=lambda s: list(s), metrics=dict))}
    held_out = {"a": ["0x", "1x", "2x", "2x"], "b": ["0y", "1y", "1y", "2y"], "label": [0, 1, 2, 2]}
    scorer = ClassScorer(SimpleNamespace(bundles=bundles), held_out, "label")
    made_a, made_b = ["0", "1", "0", "2"], ["0", "2", "0", "2"]
    assert scorer.scores("a", made_a) == {"m": 0.5, "class_accuracy": 0.75}
    assert scorer.scores("a", made_a, conditioned=False) == {"m": 0.5}
    assert scorer.agreement({"a": made_a, "b": made_b}) == 0.75
    assert scorer.agreement({"a": made_a}) is None
    tasks = [(["a"], ["label"]), (["a", "b"], ["label"]), (["b"], [])]
    assert scorer.ceilings(tasks) == {"a.class_accuracy": 1.0, "b.class_accuracy": 0.75, "a,b.class_agreement": 0.75}


def test_cfg_flag_takes_one_weight_or_one_per_condition():
    assert _cfg("3") == 3.0
    assert _cfg("image=2, label=1") == {"image": 2.0, "label": 1.0}
    for bad in ("image=two", "=2", "image=1,image=2", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="one per condition"):
            _cfg(bad)


def test_label_classifies_as_itself():
    from flowcore.builtins.label import Label

    assert Label(num_classes=4).classify(torch.tensor([3, 0, 2])) == [3, 0, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_a_missing_cuda_device_is_a_config_error_not_a_driver_traceback():
    from flowcore.train.inference import device_for

    assert device_for("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device 'cuda': this machine has no CUDA devices"):
        device_for("cuda")
