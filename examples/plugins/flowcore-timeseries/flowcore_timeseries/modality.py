"""The timeseries modality: 1-D sequences of ``length`` float32 values, ``patch`` values per token.

    file (.csv, .txt) --codec--> sample [T] --collate--> batch [B, T]
        --tokenizer--> values [B, T / patch, patch], positions [B, T / patch, 1] (patch index)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Codec, Metric, Modality, Tokenizer, Tokens


class SequenceCodec(Codec):
    """One value per line; a ``.csv`` file starts with the header line ``value``, a ``.txt`` file does not."""

    extensions = (".csv", ".txt")

    def read(self, path: Path) -> torch.Tensor:
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        first = 1
        if self.suffix(path) == ".csv":
            if not lines or lines[0].strip() != "value":
                raise DataError(f"{path}: a timeseries CSV starts with the header line 'value'")
            first = 2
        values = []
        for lineno, line in enumerate(lines[first - 1:], first):
            try:
                values.append(float(line))
            except ValueError:
                raise DataError(f"{path}, line {lineno}: not a number: {line[:40]!r}") from None
        if not values:
            raise DataError(f"{path}: no values")
        sample = torch.tensor(values, dtype=torch.float32)
        if not torch.isfinite(sample).all():
            raise DataError(f"{path}: a value is not finite (or beyond float32's range)")
        return sample

    def write(self, sample: torch.Tensor, path: Path) -> None:
        header = "value\n" if self.suffix(path) == ".csv" else ""
        Path(path).write_text(header + "".join(f"{float(v):.9g}\n" for v in sample))  # 9 digits: float32 exactly


class PatchTokenizer(Tokenizer):
    """sequences [B, T] <-> values [B, T / patch, patch]; positions [B, L, 1] = the patch index."""

    position_axes = 1

    def __init__(self, length: int, patch: int):
        self.length, self.patch, self.channels = length, patch, patch

    def encode(self, latent: torch.Tensor) -> Tokens:
        if latent.dim() != 2 or latent.shape[1] % self.patch:
            raise DataError(f"timeseries tokenizer: wants sequences [B, T] with T a multiple of {self.patch}, "
                            f"got {tuple(latent.shape)}")
        b, n = latent.shape[0], latent.shape[1] // self.patch
        positions = torch.arange(n, dtype=torch.float32, device=latent.device).reshape(1, n, 1).expand(b, n, 1)
        return Tokens(latent.reshape(b, n, self.patch), positions,
                      torch.ones(b, n, dtype=torch.bool, device=latent.device))

    def decode(self, tokens: Tokens) -> torch.Tensor:
        return tokens.values.reshape(tokens.values.shape[0], -1)

    def layout(self, batch_size: int, size: int | None = None) -> Tokens:
        """``size``: the sequence length (default ``length``)."""
        return self.encode(torch.zeros(batch_size, self.length if size is None else int(size)))


def spectrum_distance(real: Sequence[torch.Tensor], generated: Sequence[torch.Tensor]) -> float:
    """Mean absolute difference between the two sets' mean amplitude spectra (``|rfft|`` per frequency)."""
    a = torch.stack([torch.as_tensor(s, dtype=torch.float64) for s in real])
    b = torch.stack([torch.as_tensor(s, dtype=torch.float64) for s in generated])
    return float((torch.fft.rfft(a).abs().mean(0) - torch.fft.rfft(b).abs().mean(0)).abs().mean())


class Timeseries(Modality):
    """1-D sequences of float values, a patch of values per token.

    Options (``modalities.timeseries``, keyword arguments here): ``length``, ``patch``.
    """

    codec = SequenceCodec()

    def __init__(self, length: int = 64, patch: int = 8):
        self.length = length
        self._tokenizer = PatchTokenizer(length, patch)

    @property
    def tokenizer(self) -> PatchTokenizer:
        return self._tokenizer

    def validate(self, sample, where: str) -> torch.Tensor:
        t = torch.as_tensor(sample)
        if t.dtype != torch.float32 or t.shape != (self.length,):
            raise DataError(f"{where}: a timeseries sample is float32 of shape ({self.length},), "
                            f"got {str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}")
        return super().validate(t, where)

    def metrics(self) -> dict[str, Metric]:
        return {"spectrum_distance": Metric("spectrum_distance", spectrum_distance, lower_is_better=True,
                                     description="mean |difference| of the mean amplitude spectra")}
