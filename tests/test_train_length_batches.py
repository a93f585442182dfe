"""train.batch_tokens: batches of similar lengths under a token budget, every item once per epoch."""

import pytest
import torch
from torch.utils.data import Dataset

from flowcore.errors import ConfigError
from flowcore.train.data import LengthBatches, item_lengths


def lengths(n=300, seed=0):
    return torch.randint(20, 257, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_every_item_once_per_epoch_and_within_the_budget():
    ls = lengths()
    sampler = LengthBatches(ls, tokens=1024, max_items=12, seed=3)
    for _ in range(3):
        expected = len(sampler)
        batches = list(sampler)
        assert len(batches) == expected
        assert sorted(i for b in batches for i in b) == list(range(len(ls)))
        for b in batches:
            assert len(b) <= 12 and len(b) * max(ls[i] for i in b) <= 1024


def test_a_batch_holds_similar_lengths_so_little_is_padding():
    ls = lengths()
    tokens = 1024
    padded = sum(len(b) * max(ls[i] for i in b) for b in LengthBatches(ls, tokens=tokens, max_items=64))
    # random batches of the same mean count: padded to their longest item
    batches = list(LengthBatches(ls, tokens=tokens, max_items=64))
    size = round(len(ls) / len(batches))
    order = torch.randperm(len(ls), generator=torch.Generator().manual_seed(1)).tolist()
    random = sum(len(b) * max(ls[i] for i in b) for b in (order[k:k + size] for k in range(0, len(ls), size)))
    assert sum(ls) / padded > 0.9 and sum(ls) / random < 0.75
    # long items come in small batches, short ones in large
    by_len = sorted(batches, key=lambda b: max(ls[i] for i in b))
    assert len(by_len[0]) > 3 * len(by_len[-1])


def test_epochs_differ_and_a_seed_repeats():
    ls = lengths()
    a, b = LengthBatches(ls, 1024, 12, seed=0), LengthBatches(ls, 1024, 12, seed=0)
    first = list(a)
    assert first == list(b) and first != list(a)


def test_an_item_over_the_budget_goes_alone():
    batches = list(LengthBatches([10, 10, 500, 10], tokens=100, max_items=8))
    assert [2] in batches and sorted(len(b) for b in batches) == [1, 3]


def test_a_dataset_without_lengths_is_refused_with_the_key():
    class Plain(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"x": i}

    with pytest.raises(ConfigError, match="train.batch_tokens"):
        item_lengths(Plain(), "moons (train)")


# ----------------------------------------------------------------------------- resume under Lightning


class _Indices(Dataset):
    def __len__(self):
        return 40

    def __getitem__(self, i):
        return torch.tensor([float(i)])


def _fit_recording(loader, max_epochs, root, ckpt=None):
    """Batches (as index lists) each epoch of a Lightning fit that does not move its weight."""
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = {}

        def training_step(self, batch, i):
            self.seen.setdefault(self.current_epoch, []).append(batch[:, 0].long().tolist())
            return (self.w * batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = Recorder()
    trainer = L.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=root)
    trainer.fit(module, loader(), ckpt_path=ckpt)
    return module.seen, trainer


@pytest.mark.parametrize("kind", ["batch_tokens", "batch_size"])
def test_a_resumed_run_sees_the_epochs_an_uninterrupted_one_sees(tmp_path, kind):
    from torch.utils.data import DataLoader

    from flowcore.train.data import EpochShuffle

    def loader():
        if kind == "batch_tokens":
            ls = [10 + (i * 7) % 50 for i in range(40)]
            return DataLoader(_Indices(), batch_sampler=LengthBatches(ls, 200, 8, seed=1))
        return DataLoader(_Indices(), batch_size=8, sampler=EpochShuffle(40, seed=1))

    whole, _ = _fit_recording(loader, 3, tmp_path / "whole")
    first, trainer = _fit_recording(loader, 2, tmp_path / "first")
    trainer.save_checkpoint(tmp_path / "e2.ckpt")
    resumed, _ = _fit_recording(loader, 3, tmp_path / "resumed", ckpt=str(tmp_path / "e2.ckpt"))
    assert first == {0: whole[0], 1: whole[1]}
    assert list(resumed) == [2] and resumed[2] == whole[2]
    assert whole[2] != whole[0]  # the orders differ between epochs, so the check above can fail
