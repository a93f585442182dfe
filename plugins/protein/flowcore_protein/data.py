"""Datasets of protein backbones that need no download.

* ``protein_theseus``: chains of Debian's ``theseus-examples`` (PDB files under
  /usr/share/doc/theseus/examples: cytochromes, lactate dehydrogenases, trypsins, 3 more).
* ``protein_mdanalysis``: chains of the PDB/mmCIF files that pip ``MDAnalysisTests`` ships.
* ``protein_chains``: both together (deduplicated across them): the real-data training set.
* ``protein_ideal``: generated ideal backbones (NeRF from phi/psi sampled in helix, strand
  and loop regions of the Ramachandran plot), for fast tests.

Real chains are cut at chain breaks (consecutive CA-CA > 4.2 A, e.g. after skipped
residues), length-filtered (``min_length`` <= L <= ``max_length``), deduplicated by exact
sequence (first in sorted file order wins) and split by a hash of the sequence (5% test,
5% val, 90% train), so a chain stays in its split whatever else is installed.
Items are ``{"protein": frames [L, 7]}``.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import cache_dir, package_file
from flowcore.splits import keyed_split
from flowcore_protein import geometry
from flowcore_protein.pdbio import READ_SUFFIXES, Backbone, read_backbones

THESEUS_DIR = Path("/usr/share/doc/theseus/examples")
#: consecutive CA-CA distances above this are chain breaks (ideal 3.80 A; cis peptides 2.9 A)
BREAK_DISTANCE = 4.2
#: a chain's split: crc32(sequence) % 20 is 0 for test, 1 for val, anything else train
SPLIT_FRACTIONS, SPLIT_BUCKETS = {"test": 0.05, "val": 0.05}, 20


@dataclass
class Chain:
    """A backbone segment kept by a dataset: its frames and where it came from."""

    frames: torch.Tensor
    sequence: str
    source: str

    def __len__(self) -> int:
        return self.frames.shape[0]


class FramesDataset(Dataset):
    """Items ``{"protein": frames [L, 7]}``; ``chains`` keeps sequence and source file.

    ``crop``: each item is a random window of at most ``crop`` consecutive residues of its
    chain, re-centred (a new window every time it is read; torch's global generator, which
    the trainer seeds). Training on windows makes a step cheaper (attention is quadratic in
    L) and shows the model many more local environments per second (FrameFlow crops too).
    """

    def __init__(self, chains: Sequence[Chain], crop: int | None = None):
        if crop is not None and int(crop) < 2:
            raise DataError(f"protein datasets: crop must be >= 2 residues (or None), got {crop}")
        self.chains = list(chains)
        self.crop = None if crop is None else int(crop)

    def __len__(self) -> int:
        return len(self.chains)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        frames = self.chains[i].frames
        if self.crop is None or len(frames) <= self.crop:
            return {"protein": frames}
        start = int(torch.randint(len(frames) - self.crop + 1, ()))
        window = frames[start:start + self.crop].clone()
        window[:, 4:] -= window[:, 4:].mean(0)
        return {"protein": window}

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.chains]


# ----------------------------------------------------------------------------- real chains


def split_at_breaks(backbone: Backbone) -> list[Backbone]:
    """Cut a backbone where consecutive CA atoms are more than BREAK_DISTANCE apart."""
    ca = backbone.atoms[:, 1]
    gaps = np.linalg.norm(ca[1:] - ca[:-1], axis=-1) > BREAK_DISTANCE
    bounds = [0, *(np.nonzero(gaps)[0] + 1).tolist(), len(backbone)]
    return [Backbone(backbone.atoms[a:b], backbone.sequence[a:b], backbone.chain, backbone.res_ids[a:b],
                     backbone.source) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def split_of_sequence(sequence: str) -> str:
    """A chain's split, from its sequence alone: duplicates and re-runs land in the same split."""
    return keyed_split(sequence, SPLIT_FRACTIONS, buckets=SPLIT_BUCKETS)


def structure_files(root: Path) -> list[Path]:
    """Every PDB/mmCIF file (compressed or not) under root, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(READ_SUFFIXES))


def _cache_key(files: Sequence[Path], min_length: int, max_length: int) -> str:
    """Changes when a file, its size or mtime, the filters or this plugin's version change."""
    from flowcore_protein import __version__

    h = hashlib.sha256(f"{__version__}|{min_length}|{max_length}|{BREAK_DISTANCE}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _save(chains: Sequence[Chain], path: Path) -> None:
    from flowcore.io import atomic_path

    lengths = np.array([len(c) for c in chains], dtype=np.int64)
    frames = torch.cat([c.frames for c in chains]).numpy() if chains else np.zeros((0, 7), np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, frames=frames, lengths=lengths, sequences=np.array([c.sequence for c in chains]),
                 sources=np.array([c.source for c in chains]))


def _load(path: Path) -> list[Chain]:
    with np.load(path, allow_pickle=False) as z:
        ends = np.cumsum(z["lengths"])
        frames = np.split(z["frames"], ends[:-1]) if len(ends) else []
        return [Chain(torch.from_numpy(f.copy()), str(s), str(src))
                for f, s, src in zip(frames, z["sequences"], z["sources"])]


@functools.lru_cache(maxsize=8)
def _read_chains(files: tuple[Path, ...], min_length: int, max_length: int) -> tuple[Chain, ...]:
    """Segments of every readable file, length-filtered and deduplicated by sequence (cached on disk)."""
    cached = cache_dir("protein") / f"chains-{_cache_key(files, min_length, max_length)}.npz"
    if cached.is_file():
        try:
            return tuple(_load(cached))
        except (OSError, ValueError, KeyError):
            cached.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    seen: set[str] = set()
    out, unreadable = [], []
    for path in files:
        try:
            with warnings.catch_warnings():
                # test-suite files lack elements or atoms by design; what is kept is what counts
                warnings.simplefilter("ignore")
                backbones = read_backbones(path)
        except DataError:
            unreadable.append(path.name)
            continue
        for backbone in backbones:
            for seg in split_at_breaks(backbone):
                if not min_length <= len(seg) <= max_length or seg.sequence in seen:
                    continue
                seen.add(seg.sequence)
                out.append(Chain(geometry.frames_from_backbone(seg.atoms), seg.sequence,
                                 f"{path}:{seg.chain}:{int(seg.res_ids[0])}"))
    if unreadable:
        warnings.warn(f"skipped {len(unreadable)} unreadable structure file(s): {', '.join(unreadable[:10])}",
                      stacklevel=2)
    try:
        _save(out, cached)
    except OSError as exc:  # a read-only home still gets its data, only slower next time
        warnings.warn(f"could not cache protein chains in {cached}: {exc}", stacklevel=2)
    return tuple(out)


def real_chains(roots: Sequence[Path], split: str, min_length: int = 60, max_length: int = 256,
                max_files: int | None = None, crop: int | None = None) -> FramesDataset:
    """The deduplicated, length-filtered chains of the structure files under ``roots``, one split
    (``crop``: random windows of the train split, see :class:`FramesDataset`; val and test stay
    whole chains, the reference that generated backbones are measured against)."""
    files: list[Path] = []
    for root in roots:
        files.extend(structure_files(root)[:max_files])
    chains = _read_chains(tuple(files), int(min_length), int(max_length))
    kept = [c for c in chains if split_of_sequence(c.sequence) == split]
    return FramesDataset(kept, crop if split == "train" else None)


def theseus_root() -> Path:
    if not (THESEUS_DIR.is_dir() and any(THESEUS_DIR.rglob("*.pdb*"))):
        raise DataError(f"dataset protein_theseus needs the Debian package theseus-examples "
                        f"(files under {THESEUS_DIR}): sudo apt-get install theseus-examples")
    return THESEUS_DIR


def mdanalysis_root() -> Path:
    return package_file("MDAnalysisTests", "data", "dataset protein_mdanalysis needs its data files only: "
                        "pip install --no-deps MDAnalysisTests")


def theseus(split: str = "train", **options) -> FramesDataset:
    return real_chains([theseus_root()], split, **options)


def mdanalysis(split: str = "train", **options) -> FramesDataset:
    return real_chains([mdanalysis_root()], split, **options)


def chains(split: str = "train", **options) -> FramesDataset:
    """theseus-examples and MDAnalysisTests together; whichever is missing is a DataError."""
    return real_chains([theseus_root(), mdanalysis_root()], split, **options)


# ----------------------------------------------------------------------------- generated

#: (phi, psi) means and spreads in degrees; loops mix polyproline II, bridge and left-handed
HELIX = ((-63.0, -43.0), 5.0)
STRAND = ((-120.0, 130.0), 10.0)
LOOP = (((-75.0, 145.0), (-90.0, 0.0), (60.0, 40.0)), (0.5, 0.35, 0.15), 15.0)
#: segment lengths (inclusive ranges) and how often a helix (vs a strand) follows a loop
HELIX_LENGTH, STRAND_LENGTH, LOOP_LENGTH = (8, 20), (4, 10), (2, 6)
HELIX_PROBABILITY = 0.6
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def sample_torsions(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, psi [length] (degrees) and secondary structure codes ('a' helix, 'b' strand, 'c' loop)."""
    phi, psi, ss = np.empty(length), np.empty(length), np.empty(length, dtype="<U1")
    i, kind = 0, "c"
    while i < length:
        if kind == "c":
            n = rng.integers(LOOP_LENGTH[0], LOOP_LENGTH[1] + 1)
            centres, probs, sd = LOOP
            pick = rng.choice(len(centres), size=n, p=probs)
            mean = np.asarray(centres)[pick]
        else:
            (centre, sd), lo_hi = (HELIX, HELIX_LENGTH) if kind == "a" else (STRAND, STRAND_LENGTH)
            n = rng.integers(lo_hi[0], lo_hi[1] + 1)
            mean = np.tile(centre, (n, 1))
        n = min(n, length - i)
        noise = rng.normal(0.0, sd, size=(n, 2))
        phi[i:i + n], psi[i:i + n] = (mean[:n] + noise).T
        ss[i:i + n] = kind
        i += n
        kind = "c" if kind != "c" else ("a" if rng.random() < HELIX_PROBABILITY else "b")
    return phi, psi, ss


def has_clash(ca: np.ndarray, threshold: float = 3.0) -> bool:
    """True when two CA atoms [L, 3] with |i - j| > 2 are closer than ``threshold`` A."""
    i, j = np.triu_indices(len(ca), 3)
    return bool((np.linalg.norm(ca[i] - ca[j], axis=-1) < threshold).any())


def ideal_backbones(count: int, min_length: int, max_length: int, seed: int) -> list[Chain]:
    """``count`` clash-free ideal backbones of lengths in [min_length, max_length].

    All chains of one round are built together (NeRF batched over chains); chains with a CA
    clash are redrawn in the next round.
    """
    rng = np.random.default_rng(seed)
    kept: list[Chain] = []
    for _ in range(50):
        need = count - len(kept)
        if need <= 0:
            break
        batch = need + need // 2 + 1
        lengths = rng.integers(min_length, max_length + 1, size=batch)
        drawn = [sample_torsions(rng, max_length) for _ in range(batch)]
        phi = torch.from_numpy(np.stack([d[0] for d in drawn]))
        psi = torch.from_numpy(np.stack([d[1] for d in drawn]))
        atoms = geometry.build_backbone(phi, psi)
        for k in range(batch):
            chain = atoms[k, : lengths[k]]
            if len(kept) < count and not has_clash(chain[:, 1].numpy()):
                kept.append(Chain(geometry.frames_from_backbone(chain), "".join(drawn[k][2][: lengths[k]]),
                                  f"ideal:{seed}:{len(kept)}"))
    if len(kept) < count:
        raise DataError(f"protein_ideal: only {len(kept)} of {count} clash-free backbones after 50 rounds; "
                        "lower max_length")
    return kept


def ideal(split: str = "train", size: int | None = None, min_length: int = 40, max_length: int = 128,
          seed: int = 0, crop: int | None = None) -> FramesDataset:
    """Generated ideal backbones; ``sequence`` holds the intended secondary structure (a/b/c)."""
    if min_length < 5 or max_length < min_length:
        raise DataError(f"protein_ideal: need 5 <= min_length <= max_length, got {min_length}, {max_length}")
    count = size if size is not None else {"train": 512, "val": 64, "test": 64}[split]
    return FramesDataset(ideal_backbones(count, min_length, max_length, 1000 * seed + SPLIT_SEEDS[split]),
                         crop if split == "train" else None)
