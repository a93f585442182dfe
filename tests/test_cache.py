"""A small network is trained once and cached with its metadata; a changed key or a bad file retrains."""

import torch
from safetensors import safe_open
from torch import nn

from flowcore.cache import cached_network, read_metadata


class Trainer:
    """Trains a tiny nn.Linear (weights from the call count) and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> tuple[nn.Module, dict[str, str]]:
        self.calls += 1
        model = nn.Linear(3, 2)
        with torch.no_grad():
            model.weight.fill_(float(self.calls))
            model.bias.zero_()
        return model, {"inputs": "3", "score": f"{0.5 * self.calls}"}


def build(meta: dict[str, str]) -> nn.Module:
    return nn.Linear(int(meta["inputs"]), 2)


def test_the_second_call_loads_what_the_first_trained(tmp_path):
    path, train = tmp_path / "net.safetensors", Trainer()
    first, meta = cached_network(path, "k1", build, train)
    second, again = cached_network(path, "k1", build, train)
    assert train.calls == 1 and second is not first and not second.training
    assert torch.equal(second.weight, first.weight) and torch.equal(second.bias, first.bias)
    assert again == meta and meta["score"] == "0.5" and meta["recipe_key"] == "k1" and "train_seconds" in meta
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == meta


def test_a_changed_key_retrains_and_overwrites(tmp_path):
    path, train = tmp_path / "net.safetensors", Trainer()
    cached_network(path, "k1", build, train)
    model, meta = cached_network(path, "k2", build, train)
    assert train.calls == 2 and meta["recipe_key"] == "k2" and model.weight[0, 0].item() == 2.0
    assert read_metadata(path)["recipe_key"] == "k2"


def test_retrain_trains_even_when_the_file_is_current(tmp_path):
    path, train = tmp_path / "net.safetensors", Trainer()
    cached_network(path, "k1", build, train)
    cached_network(path, "k1", build, train, retrain=True)
    assert train.calls == 2


def test_an_unreadable_file_is_trained_again(tmp_path):
    path, train = tmp_path / "net.safetensors", Trainer()
    path.write_bytes(b"not a safetensors file")
    assert read_metadata(path) is None
    model, meta = cached_network(path, "k1", build, train)
    assert train.calls == 1 and read_metadata(path) == meta
    cached_network(path, "k1", build, train)
    assert train.calls == 1
    assert list(tmp_path.iterdir()) == [path]  # the atomic write left no temporary file


def test_a_missing_file_has_no_metadata(tmp_path):
    assert read_metadata(tmp_path / "absent.safetensors") is None
