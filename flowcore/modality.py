"""The Modality contract: what a plugin supplies so the core can train on a data type.

A sample travels through four forms::

    file  --codec.read-->  sample  --collate-->  batch  --autoencoder.encode-->  latent
                                                                                   |
    tokens (values [B, L, C], positions [B, L, A], mask [B, L])  <--tokenizer.encode-+

and back the same way (tokenizer.decode, autoencoder.decode, split, codec.write). The core
only ever sees tokens; everything else belongs to the modality.

Discovery is lazy. A plugin's hook returns :class:`~flowcore.spec.ModalitySpec` objects
(flowcore/spec.py), which are plain data (no torch). The heavy :class:`Modality` is built by
``spec.build(**options)`` the first time someone needs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from flowcore.errors import DataError
from flowcore.io import atomic_path

if TYPE_CHECKING:
    import torch

    from flowcore.flow.path import ProbabilityPath

# ----------------------------------------------------------------------------- tokens


@dataclass
class Tokens:
    """A batch of one modality as the core sees it.

    values    [B, L, C]  float: what the flow moves (C is the modality's token channels)
    positions [B, L, A]  float or int: coordinates per RoPE axis (row/col, frame/bin, residue…)
    mask      [B, L]     bool: True where a token is real (False = padding)
    """

    values: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        v, p, m = self.values, self.positions, self.mask
        if v.dim() != 3 or p.dim() != 3 or m.dim() != 2:
            raise DataError(
                f"Tokens want values [B, L, C], positions [B, L, A], mask [B, L]; got "
                f"values {tuple(v.shape)}, positions {tuple(p.shape)}, mask {tuple(m.shape)}"
            )
        if v.shape[:2] != p.shape[:2] or v.shape[:2] != m.shape:
            raise DataError(
                f"Tokens disagree on [B, L]: values {tuple(v.shape)}, positions "
                f"{tuple(p.shape)}, mask {tuple(m.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    def to(self, *args: Any, **kwargs: Any) -> Tokens:
        """Move values and positions (mask keeps bool) like ``Tensor.to``."""
        values = self.values.to(*args, **kwargs)
        positions = self.positions.to(device=values.device)
        return Tokens(values, positions, self.mask.to(device=values.device))

    def with_values(self, values: torch.Tensor) -> Tokens:
        """Same positions and mask, new values (e.g. noise, or a sample from the flow)."""
        return Tokens(values, self.positions, self.mask)


# ----------------------------------------------------------------------------- parts


class Codec(ABC):
    """Reads native files into samples and writes samples back.

    ``read`` must raise :class:`DataError` naming the file when it is corrupt or truncated.
    """

    #: file suffixes this codec reads and writes, lower case with the dot, first = default
    extensions: tuple[str, ...] = ()
    #: those of ``extensions`` that ``read`` takes but ``write`` refuses (MP3 without an encoder)
    read_only_extensions: tuple[str, ...] = ()
    #: how far a sample written and read back may move: a number for every extension, or
    #: ``{extension: number}`` (a lossy format gets its own; one left out gets the kit's ``atol``);
    #: None: the conformance kit's ``atol`` (1e-5 by default)
    round_trip_atol: float | Mapping[str, float] | None = None

    @abstractmethod
    def read(self, path: Path) -> Any:
        """One file -> one sample."""

    @abstractmethod
    def write(self, sample: Any, path: Path) -> None:
        """One sample -> one file (the caller makes the write atomic).

        ``path`` may be a temporary name beside the target (``.name.png.XXXX.png.tmp``): a codec
        that writes several formats picks one with :meth:`suffix`, not ``path.suffix``.
        """

    def suffix(self, path: Path) -> str:
        """The extension ``path`` is in, lower case: its last suffix, or the one before a temporary ``.tmp``."""
        suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".tmp"]
        return suffixes[-1] if suffixes else ""

    def read_all(self, path: Path) -> list[Any]:
        """A file that may hold several samples (a CSV of points, of rows) -> samples."""
        return [self.read(path)]

    def write_all(self, samples: Sequence[Any], out_dir: Path, stem: str = "sample") -> list[Path]:
        """Many samples -> files in ``out_dir``; returns the paths written."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, sample in enumerate(samples):
            path = out_dir / f"{stem}_{i:04d}{self.extensions[0]}"
            with atomic_path(path) as tmp:
                self.write(sample, tmp)
            paths.append(path)
        return paths


class Tokenizer(ABC):
    """Latent batch <-> :class:`Tokens`. Must round-trip exactly (up to float error)."""

    #: C, the channels of each token
    channels: int
    #: A, the number of RoPE position axes
    position_axes: int
    #: per position axis, None or the period P of a circular axis (azimuth: positions p and
    #: p + P are the same place); the transformer's RoPE wraps there (``rope_periods``)
    position_periods: tuple[float | None, ...] | None = None

    @abstractmethod
    def encode(self, latent: Any) -> Tokens:
        """A collated (and encoded) batch -> tokens."""

    @abstractmethod
    def decode(self, tokens: Tokens) -> Any:
        """Tokens -> a latent batch like the one ``encode`` took."""

    @abstractmethod
    def layout(self, batch_size: int, size: Any = None) -> Tokens:
        """Zero-valued tokens with the positions and mask of ``batch_size`` samples of ``size``.

        Generation starts here: the core fills ``values`` with noise from the path's prior.
        ``size`` is modality-specific (image (H, W), protein length, …); None = the default.
        """


class Autoencoder(ABC):
    """Optional latent model (a torch ``nn.Module`` in practice), trained as its own stage.

    The core freezes it while training a flow. Pixel-space modalities use none.
    """

    @abstractmethod
    def encode(self, batch: Any) -> Any:
        """Batch -> latent (the mean, scaled and shifted for the flow)."""

    @abstractmethod
    def decode(self, latent: Any) -> Any:
        """Latent -> batch."""

    @abstractmethod
    def loss(self, batch: Any) -> Mapping[str, torch.Tensor]:
        """Training losses for the autoencoder stage; key ``"loss"`` is minimised."""


@dataclass(frozen=True)
class Metric:
    """A distance between real and generated samples (lists of samples, same modality)."""

    name: str
    fn: Callable[[Sequence[Any], Sequence[Any]], float]
    lower_is_better: bool = True
    description: str = ""

    def __call__(self, real: Sequence[Any], generated: Sequence[Any]) -> float:
        return float(self.fn(real, generated))


# ----------------------------------------------------------------------------- modality


class Modality(ABC):
    """One data type: its codec, autoencoder, tokenizer, path, datasets and metrics."""

    #: the registered name (set by the spec that builds it)
    name: str = ""
    #: native files, or None when the modality has no file form
    codec: Codec | None = None

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """How a latent batch becomes tokens."""

    @property
    def path(self) -> ProbabilityPath:
        """The probability path; Euclidean linear (rectified flow) unless overridden."""
        from flowcore.flow.path import LinearPath  # lazy: this module stays free of torch

        return LinearPath()

    def autoencoder(self) -> Autoencoder | None:
        """A fresh (untrained) autoencoder, or None to flow on the samples directly."""
        return None

    def collate(self, samples: Sequence[Any]) -> Any:
        """Samples -> one batch. Default: ``torch.stack`` (override for variable sizes)."""
        import torch  # lazy: this module stays free of torch

        return torch.stack([torch.as_tensor(s) for s in samples])

    def split(self, batch: Any) -> list[Any]:
        """Batch -> samples (the inverse of :meth:`collate`)."""
        return list(batch)

    def validate(self, sample: Any, where: str) -> Any:
        """Check one sample (shape, dtype, finiteness); raise DataError naming ``where``."""
        import torch  # lazy: this module stays free of torch

        t = torch.as_tensor(sample)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise DataError(f"{where}: {self.name} sample holds NaN or infinite values")
        return sample

    def auxiliary_loss(self, predicted: Tokens, target: Tokens, t: torch.Tensor) -> torch.Tensor | None:
        """An extra training loss per sample [B] on the network's estimate of the clean tokens, or None.

        predicted  the clean tokens the predicted velocity points back to
                   (``path.clean_estimate(x_t, v, t)``), with ``target``'s positions and mask
        target     the data tokens x0
        t          [B] each sample's time (0 = data)
        FlowModule adds it to the sample's velocity loss, so it only counts for noised samples.
        Override it for losses in the data's own geometry that the velocity error does not
        weigh (FrameDiff/FrameFlow: backbone atom positions and local distances near t = 0).
        The default, None, adds nothing and costs nothing.
        """
        return None

    def metrics(self) -> dict[str, Metric]:
        """Distances between real and generated samples, keyed by metric name."""
        return {}

    def classify(self, samples: Sequence[Any]) -> list[int] | None:
        """The class of each sample under the modality's metric classifier; None when it has none.

        ``flowcore eval`` scores generated samples with it against the class of the held-out item
        they were generated for (``eval.class_by``, e.g. label -> image, audio -> image in an
        any-to-any run), and the same classifier on the real held-out samples gives the ceiling.
        Class indices are those of the run's class modality (a ``label`` sample).
        """
        return None

    def preview(self, samples: Sequence[Any], path: Path) -> Path | None:
        """Write something a person opens (grid PNG, scatter plot…); return its path."""
        return None


__all__ = ["Tokens", "Codec", "Tokenizer", "Autoencoder", "Metric", "Modality"]
