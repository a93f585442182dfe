"""The ``protein`` modality: backbones as one rigid frame per residue (ReQFlow).

    file (PDB/mmCIF) --codec--> sample: frames [L, 7] = (unit quaternion (w,x,y,z), CA - mean CA in A)
    samples --collate--> {"frames": [B, L, 7], "mask": [B, L]}          (padded with identity frames)
    batch --tokenizer--> values [B, L, 7] = (quaternion, CA / translation_scale),
                         positions [B, L, 1] = residue index, mask [B, L]

The flow runs on SO(3) x R^3 per residue: the core's ``ProductPath`` of ``QuaternionPath``
(geodesic, uniform prior) and ``LinearPath(centre=True)`` (a unit Gaussian centred over each
chain's real residues: a centred Gaussian of ``translation_scale`` = 10 A in Angstrom, like
the data, which is centred per chain). Generated frames become atoms with the ideal residue
geometry (``geometry.backbone_from_frames``). Training may add FrameDiff's auxiliary losses
on the predicted clean backbone (``Protein.auxiliary_loss``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Codec, Metric, Modality, Tokenizer, Tokens
from flowcore_protein import geometry
from flowcore_protein.pdbio import READ_SUFFIXES, read_backbones, write_backbone_pdb

#: channels of a token / a frame: quaternion (4) + translation (3)
FRAME_CHANNELS = 7
IDENTITY_FRAME = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class ProteinCodec(Codec):
    """PDB / mmCIF / BinaryCIF (also .gz, .bz2) <-> frames [L, 7] per protein chain (written in the suffix's format).

    chains: chain ids to read (None = all protein chains; ``read`` returns the first).
    residue: GLY or ALA, the residue name written.
    """

    extensions = (".pdb", *(s for s in READ_SUFFIXES if s != ".pdb"))
    #: PDB stores coordinates to 1e-3 A; frames re-derived from them agree to ~1e-3
    round_trip_atol = 2e-3

    def __init__(self, chains: Sequence[str] | None = None, residue: str = "GLY"):
        self.chains = None if chains is None else [str(c) for c in chains]
        self.residue = residue

    def read_all(self, path: Path) -> list[torch.Tensor]:
        return [geometry.frames_from_backbone(b.atoms) for b in read_backbones(path, self.chains)]

    def read(self, path: Path) -> torch.Tensor:
        return self.read_all(path)[0]

    def write(self, sample: torch.Tensor, path: Path) -> None:
        atoms = geometry.backbone_from_frames(torch.as_tensor(sample)).numpy()
        write_backbone_pdb(atoms, path, residue=self.residue)


class FrameTokenizer(Tokenizer):
    """{"frames" [B, L, 7], "mask" [B, L]} <-> Tokens(values [B, L, 7], positions [B, L, 1], mask).

    values = (quaternion, translation / translation_scale); positions = residue index 0..L-1
    (the RoPE axis); decode renormalises the quaternion (canonical sign) and re-centres the CA
    over the real residues, so what the flow ends on is a valid, centred sample.
    """

    channels = FRAME_CHANNELS
    position_axes = 1

    def __init__(self, translation_scale: float = 10.0, default_length: int = 128):
        self.translation_scale = float(translation_scale)
        self.default_length = int(default_length)

    def encode(self, latent: dict[str, torch.Tensor]) -> Tokens:
        frames, mask = latent["frames"], latent["mask"]
        if frames.dim() != 3 or frames.shape[-1] != FRAME_CHANNELS or mask.shape != frames.shape[:2] \
                or mask.dtype != torch.bool:
            raise DataError(f"frame tokenizer wants frames [B, L, 7] and a bool mask [B, L], got frames "
                            f"{tuple(frames.shape)} and mask {tuple(mask.shape)} {mask.dtype}")
        values = torch.cat([frames[..., :4], frames[..., 4:] / self.translation_scale], -1)
        return Tokens(values, _residue_index(mask), mask)

    def decode(self, tokens: Tokens) -> dict[str, torch.Tensor]:
        from flowcore.flow import so3

        mask = tokens.mask
        m = mask.unsqueeze(-1).to(tokens.values.dtype)
        trans = tokens.values[..., 4:] * self.translation_scale
        centre = (trans * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
        identity = tokens.values.new_tensor(IDENTITY_FRAME)
        frames = torch.cat([so3.canonical(tokens.values[..., :4]), (trans - centre)], -1)
        return {"frames": torch.where(mask.unsqueeze(-1), frames, identity), "mask": mask}

    def layout(self, batch_size: int, size: int | Sequence[int] | None = None) -> Tokens:
        """Identity frames for ``batch_size`` chains of ``size`` residues.

        size: one length for all, or a list of lengths taken in turn (chain i gets
        ``size[i % len(size)]``), so a config's ``size: [60, 128, 256]`` generates a mix.
        """
        lengths = _lengths(batch_size, self.default_length if size is None else size)
        mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
        frames = torch.tensor(IDENTITY_FRAME).expand(batch_size, max(lengths), FRAME_CHANNELS).clone()
        return self.encode({"frames": frames, "mask": mask})


def _lengths(batch_size: int, size: int | Sequence[int]) -> list[int]:
    cycle = [int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]
    if not cycle or min(cycle) < 1:
        raise DataError(f"protein layout: size must be a length >= 1 or a list of them, got {size!r}")
    return [cycle[i % len(cycle)] for i in range(batch_size)]


def _residue_index(mask: torch.Tensor) -> torch.Tensor:
    """positions [B, L, 1]: 0..L-1 along each chain (padding keeps counting; it is masked)."""
    b, length = mask.shape
    return torch.arange(length, dtype=torch.float32, device=mask.device).expand(b, length).unsqueeze(-1)


class Protein(Modality):
    """Protein backbones as per-residue rigid frames on SE(3) = SO(3) x R^3.

    Options (the config's ``modalities.protein`` section, checked by
    :class:`flowcore_protein.options.ProteinOptions`):
      translation_scale  Angstrom per token unit for CA translations (10: the prior is N(0, 10 A))
      length             default number of residues ``layout`` gives (generation)
      chains             chain ids the codec reads (None = all)
      residue            GLY or ALA, the residue name written to PDB
      metrics            names of the metrics to compute (None = all, see ``metrics.METRICS``)
      tm_samples         at most this many samples per side enter the pairwise TM-score
      aux_weight         weight of the auxiliary backbone losses (0 = off; see ``auxiliary_loss``)
      aux_t_max          they apply to samples with t < aux_t_max (near the data)
      clash_weight       weight of the auxiliary clash hinge on every CA pair |i - j| > 2 (0 = off)
      clash_distance     the hinge's distance in A (3.8: a pair closer than this and than in the data pays)
      clash_t_max        the hinge applies for t < clash_t_max (None = aux_t_max), at full weight up to
                         aux_t_max and tapering linearly to 0 at clash_t_max above it
      rotation_schedule  "linear" or "exp": how sampling moves rotations (the core's
                         ``QuaternionPath(schedule=...)``; training is the same either way)
      rotation_rate      the exp schedule's rate (FrameFlow, ReQFlow: 10)
    """

    def __init__(self, translation_scale: float = 10.0, length: int = 128, chains: Sequence[str] | None = None,
                 residue: str = "GLY", metrics: Sequence[str] | None = None, tm_samples: int = 32,
                 aux_weight: float = 0.0, aux_t_max: float = 0.25, rotation_schedule: str = "linear",
                 rotation_rate: float = 10.0, clash_weight: float = 0.0, clash_distance: float = 3.8,
                 clash_t_max: float | None = None):
        from flowcore_protein.metrics import METRICS

        self.codec = ProteinCodec(chains, residue)
        self._tokenizer = FrameTokenizer(translation_scale, length)
        self.metric_names = list(METRICS) if metrics is None else list(metrics)
        self.tm_samples = int(tm_samples)
        self.aux_weight, self.aux_t_max = float(aux_weight), float(aux_t_max)
        self.clash_weight, self.clash_distance = float(clash_weight), float(clash_distance)
        self.clash_t_max = self.aux_t_max if clash_t_max is None else float(clash_t_max)
        self.rotation_schedule, self.rotation_rate = rotation_schedule, float(rotation_rate)

    @property
    def tokenizer(self) -> FrameTokenizer:
        return self._tokenizer

    @property
    def path(self):
        from flowcore.flow.path import LinearPath, ProductPath, QuaternionPath

        rotations = QuaternionPath(schedule=self.rotation_schedule, rate=self.rotation_rate)
        return ProductPath([(rotations, 4), (LinearPath(centre=True), 3)])

    def auxiliary_loss(self, predicted: Tokens, target: Tokens, t: torch.Tensor) -> torch.Tensor | None:
        """FrameDiff's auxiliary losses and the clash hinge on the predicted clean backbone, per chain [B].

        In token units (Angstrom / translation_scale), over real residues, for chains with
        t < aux_t_max, times aux_weight (FrameDiff: t < 0.25 in this time convention):

        * atoms: mean squared error of the N, CA, C positions (ideal residue in each frame);
        * distances: mean squared error of the distances between those atoms over the pairs
          closer than 6 A in the data (FrameDiff) or in the prediction (which also
          penalises clashes the data does not have).

        The clash hinge (``clash_weight``, in A^2, not scaled by aux_weight) has its own window,
        t < clash_t_max, times ``clash_time_weight(t)``: per chain, the mean over its residues i of
        sum_j max(0, min(clash_distance, d_true) - d_pred)^2 over the CA pairs |i - j| > 2: a pair
        pays only where it is closer than clash_distance and than in the data.
        """
        if self.aux_weight == 0 and self.clash_weight == 0:
            return None
        loss = predicted.values.new_zeros(t.shape[0])
        if self.aux_weight:
            near = (t < self.aux_t_max).nonzero().squeeze(1)
            if near.numel():
                pred, true, mask = self._rows(predicted, target, near)
                loss = loss.index_put((near,), self.aux_weight * self._backbone(pred, true, mask))
        if self.clash_weight:
            weight = self.clash_time_weight(t)
            rows = (weight > 0).nonzero().squeeze(1)
            if rows.numel():
                pred, true, mask = self._rows(predicted, target, rows)
                clash = self._clash(pred[:, 1::3], true[:, 1::3], mask)
                loss = loss.index_add(0, rows, self.clash_weight * weight[rows] * clash)
        return loss

    def clash_time_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The clash hinge's weight per chain [B] at times t [B]: 1 for t < min(aux_t_max, clash_t_max),
        then linear down to 0 at clash_t_max.

        Clashes form in the clean CA estimate well above aux_t_max (long-range pairs, by t ~ 0.3,
        benchmarks/notes/protein.md), so the hinge may reach further than the backbone losses. The taper:
        at large t the clean estimate is a posterior mean over many chains, shrunk towards their
        centre, so its pairs may be legitimately closer than in any one chain; the hinge should bite
        fully only where that estimate is close to a single structure.
        """
        full = min(self.aux_t_max, self.clash_t_max)
        if self.clash_t_max <= full:
            return (t < self.clash_t_max).to(t.dtype)
        return ((self.clash_t_max - t) / (self.clash_t_max - full)).clamp(0, 1) * (t < self.clash_t_max)

    def _rows(self, predicted: Tokens, target: Tokens, rows: torch.Tensor):
        """N, CA, C of the chains ``rows`` [N, 3L, 3] (prediction, data) and their mask [N, L], cut to
        their longest real chain (the pair terms are quadratic in L; most of a batch is elsewhere)."""
        mask = target.mask[rows]
        length = int(mask.sum(1).max())
        pred = self._atoms(predicted.values[rows, :length])
        true = self._atoms(target.values[rows, :length])
        return pred, true, mask[:, :length]

    def _backbone(self, pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """FrameDiff's atom + local-distance losses per chain [N] from N, CA, C [N, 3L, 3] and mask [N, L]."""
        real = mask.repeat_interleave(3, 1).to(pred.dtype)  # [N, 3L]
        atom = (((pred - true) ** 2).sum(-1) * real).sum(1) / real.sum(1).clamp_min(1)
        d_pred, d_true = torch.cdist(pred, pred), torch.cdist(true, true)
        close = 6.0 / self.tokenizer.translation_scale
        pairs = ((d_true < close) | (d_pred < close)).to(pred.dtype) * real[:, :, None] * real[:, None, :]
        pairs = pairs * (1 - torch.eye(pairs.shape[1], dtype=pairs.dtype, device=pairs.device))
        dist = (((d_pred - d_true) ** 2) * pairs).sum((1, 2)) / pairs.sum((1, 2)).clamp_min(1)
        return atom + dist

    def _clash(self, pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The clash hinge per chain [N] from CA [N, L, 3] (token units) and mask [N, L], in A^2."""
        scale = self.tokenizer.translation_scale
        d_pred, pairs = geometry.nonlocal_pairs(pred * scale, mask)
        d_true = torch.cdist(true, true) * scale
        hinge = (torch.clamp(d_true, max=self.clash_distance) - d_pred).clamp_min(0) ** 2
        return (hinge * pairs).sum((1, 2)) / mask.to(pred.dtype).sum(1).clamp_min(1)

    def _atoms(self, values: torch.Tensor) -> torch.Tensor:
        """Token values [B, L, 7] -> N, CA, C of every residue [B, 3L, 3] in token units."""
        from flowcore.flow import so3

        rotation = so3.to_matrix(values[..., :4])
        local = values.new_tensor([geometry.IDEAL_N, geometry.IDEAL_CA, geometry.IDEAL_C])
        local = local / self.tokenizer.translation_scale
        atoms = (rotation.unsqueeze(-3) @ local[:, :, None]).squeeze(-1) + values[..., None, 4:]
        return atoms.flatten(1, 2)

    def collate(self, samples: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        lengths = [int(s.shape[0]) for s in samples]
        frames = torch.tensor(IDENTITY_FRAME).repeat(len(samples), max(lengths), 1)
        mask = torch.zeros(len(samples), max(lengths), dtype=torch.bool)
        for i, s in enumerate(samples):
            frames[i, : lengths[i]] = torch.as_tensor(s, dtype=torch.float32)
            mask[i, : lengths[i]] = True
        return {"frames": frames, "mask": mask}

    def split(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [f[m] for f, m in zip(batch["frames"], batch["mask"])]

    def validate(self, sample: Any, where: str) -> torch.Tensor:
        t = torch.as_tensor(sample)
        if t.dim() != 2 or t.shape[1] != FRAME_CHANNELS or t.shape[0] < 1 or not t.is_floating_point():
            raise DataError(f"{where}: a protein sample is frames [L, 7] float (quaternion + CA), "
                            f"got {tuple(t.shape)} {t.dtype}")
        if not torch.isfinite(t).all():
            raise DataError(f"{where}: protein frames hold NaN or infinite values")
        norms = t[:, :4].norm(dim=-1)
        if (norms - 1).abs().max() > 1e-3:
            raise DataError(f"{where}: protein frames need unit quaternions in channels 0-3, "
                            f"norms range {float(norms.min()):.4f}..{float(norms.max()):.4f}")
        return t.float()

    def metrics(self) -> dict[str, Metric]:
        from flowcore_protein.metrics import make_metrics

        return make_metrics(self.metric_names, tm_samples=self.tm_samples)

    def preview(self, samples: Sequence[torch.Tensor], path: Path) -> Path:
        """A PDB file holding up to 26 samples as chains A-Z, laid side by side 60 A apart."""
        from flowcore_protein.pdbio import write_chains_pdb

        path = Path(path).with_suffix(".pdb")
        atoms = [geometry.backbone_from_frames(s).numpy() for s in list(samples)[:26]]
        write_chains_pdb(atoms, path, residue=self.codec.residue, spacing=60.0)
        return path
