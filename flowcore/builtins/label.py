"""label: a categorical value as one token, one-hot scaled to +-1.

It works both ways: as a condition (class-conditional generation: label -> image) and as a
target (image -> label is classification by flow: the generated token's argmax). A sample
is a class index (int); ``classes`` may give the names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Codec, Metric, Modality, Tokenizer, Tokens


class LabelText(Codec):
    """A ``.txt`` file holding one class name or index."""

    extensions = (".txt",)

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)

    def read(self, path: Path) -> int:
        try:
            text = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read label: {exc}") from exc
        return self.parse(text, where=str(path))

    def parse(self, text: str, where: str) -> int:
        if text in self.classes:
            return self.classes.index(text)
        try:
            index = int(text)
        except ValueError:
            raise DataError(f"{where}: {text[:80]!r} is neither a class name {self.classes[:10]} "
                            "nor an index") from None
        if not 0 <= index < len(self.classes):
            raise DataError(f"{where}: class index {index} outside [0, {len(self.classes)})")
        return index

    def write(self, sample: int, path: Path) -> None:
        Path(path).write_text(self.classes[int(sample)] + "\n")


class OneHotTokenizer(Tokenizer):
    """class indices [B] <-> values [B, 1, K] in {-1, +1}, positions [B, 1, 1] = 0."""

    position_axes = 1

    def __init__(self, num_classes: int):
        self.channels = num_classes

    def encode(self, latent: torch.Tensor) -> Tokens:
        latent = torch.as_tensor(latent)
        if latent.is_floating_point() and not torch.equal(latent, latent.round()):
            raise DataError(f"label indices must be whole numbers, got {latent.reshape(-1).tolist()[:8]}")
        idx = latent.long().reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.channels):
            raise DataError(f"label index outside [0, {self.channels}): {idx.tolist()[:8]}")
        values = torch.nn.functional.one_hot(idx, self.channels).float() * 2 - 1
        b = idx.shape[0]
        return Tokens(values.unsqueeze(1), torch.zeros(b, 1, 1, device=idx.device),
                      torch.ones(b, 1, dtype=torch.bool, device=idx.device))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        return tokens.values[:, 0, :].argmax(-1)

    def layout(self, batch_size: int, size=None) -> Tokens:
        return self.encode(torch.zeros(batch_size, dtype=torch.long))


def accuracy(real: Sequence, generated: Sequence) -> float:
    """Fraction of positions where generated == real (for paired data: classification)."""
    a, b = torch.as_tensor(list(real)).long(), torch.as_tensor(list(generated)).long()
    if a.shape != b.shape:
        raise DataError(f"accuracy needs paired labels, got {a.numel()} real and {b.numel()} generated")
    return float((a == b).float().mean())


class Label(Modality):
    """Categorical labels. Options (:class:`~flowcore.builtins.options.LabelOptions`): ``num_classes``
    or ``classes`` (names)."""

    def __init__(self, num_classes: int | None = None, classes: Sequence[str] | None = None):
        # flowcore.builtins.options.LabelOptions has checked that one of them is given, and that they agree
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.codec = LabelText(self.classes)
        self._tokenizer = OneHotTokenizer(len(self.classes))

    @property
    def tokenizer(self) -> OneHotTokenizer:
        return self._tokenizer

    def collate(self, samples: Sequence) -> torch.Tensor:
        return torch.as_tensor([int(s) for s in samples], dtype=torch.long)

    def split(self, batch: torch.Tensor) -> list[int]:
        return [int(i) for i in batch]

    def validate(self, sample, where: str):
        if isinstance(sample, str):
            return self.codec.parse(sample, where)
        try:
            index = int(sample)
        except (TypeError, ValueError):
            raise DataError(f"{where}: a label is a class index or name, got {sample!r}") from None
        if not 0 <= index < len(self.classes):
            raise DataError(f"{where}: class index {index} outside [0, {len(self.classes)})")
        return index

    def classify(self, samples: Sequence) -> list[int]:
        """A label is its own class."""
        return [int(s) for s in samples]

    def histogram_tv(self, real: Sequence, generated: Sequence) -> float:
        """Total-variation distance between the class histograms of the two sets."""
        k = len(self.classes)
        ha = torch.bincount(torch.as_tensor(list(real)).long(), minlength=k).double()
        hb = torch.bincount(torch.as_tensor(list(generated)).long(), minlength=k).double()
        return float(0.5 * (ha / ha.sum() - hb / hb.sum()).abs().sum())

    def metrics(self) -> dict[str, Metric]:
        return {
            "accuracy": Metric("accuracy", accuracy, False, "paired: fraction of equal labels"),
            "histogram_tv": Metric("histogram_tv", self.histogram_tv, True,
                                   "total variation between class histograms"),
        }
