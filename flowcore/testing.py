"""Conformance kit: the checks every Modality must pass. Plugin tests call it.

    from flowcore.testing import check_modality
    def test_conformance(tmp_path):
        report = check_modality(MyModality(), tmp_path, datasets=["my_dataset"])

Each check raises ``AssertionError`` with a message that says what the plugin must fix.
The checks compare against something true: round trips return their input, the path's
endpoints are the data and the noise, metrics rank real-vs-real above real-vs-noise, and a
codec given a damaged file (random bytes, a written sample cut short) raises DataError or
reads back valid samples, never another exception.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from flowcore.errors import DataError
from flowcore.modality import Codec, Modality, Tokens
from flowcore.registry import get_registry
from flowcore.spec import DatasetSpec


@dataclass
class ConformanceReport:
    modality: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _close(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape != b.shape:
            return False
        if a.is_floating_point() or b.is_floating_point():
            return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=0))
        return bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    return a == b


def check_tokens(tokens: Tokens, modality: Modality, batch_size: int) -> None:
    """Shapes and dtypes of values / positions / mask agree with the tokenizer's declaration."""
    tok = modality.tokenizer
    name = modality.name
    assert isinstance(tokens, Tokens), f"{name}: tokenizer.encode must return Tokens, got {type(tokens)}"
    b, length, c = tokens.values.shape
    assert b == batch_size, f"{name}: tokens have batch {b}, expected {batch_size}"
    assert c == tok.channels, f"{name}: values have {c} channels, tokenizer.channels says {tok.channels}"
    assert tokens.positions.shape[-1] == tok.position_axes, (
        f"{name}: positions have {tokens.positions.shape[-1]} axes, tokenizer.position_axes says {tok.position_axes}")
    assert tokens.values.is_floating_point(), f"{name}: values must be floating point"
    assert tokens.mask.dtype == torch.bool, f"{name}: mask must be bool, got {tokens.mask.dtype}"
    assert tokens.mask.any(dim=1).all(), f"{name}: every sample needs at least one real token"
    assert torch.isfinite(tokens.values).all(), f"{name}: token values hold NaN/inf"
    assert length > 0


def pad_tokens(parts: Sequence[Tokens]) -> Tokens:
    """Concatenate token batches of different lengths along B, padding L (mask False)."""
    length = max(p.values.shape[1] for p in parts)

    def pad(x: torch.Tensor, fill: Any) -> torch.Tensor:
        extra = length - x.shape[1]
        if extra == 0:
            return x
        shape = (x.shape[0], extra, *x.shape[2:])
        return torch.cat([x, torch.full(shape, fill, dtype=x.dtype, device=x.device)], 1)

    return Tokens(torch.cat([pad(p.values, 0) for p in parts]),
                  torch.cat([pad(p.positions, 0) for p in parts]),
                  torch.cat([pad(p.mask, False) for p in parts]))


def check_modality(modality: Modality, tmp_path: Path, datasets: Sequence[str | DatasetSpec] = (),
                   samples: Sequence[Any] | None = None, registry=None, atol: float = 1e-5,
                   dataset_options: dict[str, Any] | None = None,
                   sizes: Sequence[Any] = ()) -> ConformanceReport:
    """Run every conformance check on ``modality``; return what passed and what was skipped.

    samples:  a few real samples; by default the first items of the first dataset.
    datasets: names (looked up in ``registry``) or specs; each must yield valid samples.
    sizes:    for variable-size modalities, two or more ``layout`` sizes to check masks with.
    """
    report = ConformanceReport(modality.name)
    name = modality.name
    tmp_path = Path(tmp_path)
    registry = registry or get_registry()
    specs = [registry.dataset(d) if isinstance(d, str) else d for d in datasets]

    # every dataset yields valid samples of this modality
    for spec in specs:
        ds = spec.build("train", **(dataset_options or {}))
        assert len(ds) > 0, f"dataset {spec.name!r} is empty"
        for i in range(min(4, len(ds))):
            item = ds[i]
            assert isinstance(item, dict) and set(item) == set(spec.modalities), (
                f"dataset {spec.name!r} item {i} must be a dict with keys {spec.modalities}, got {item!r:.80}")
            modality.validate(item[name], f"dataset {spec.name!r} item {i}")
        report.passed.append(f"dataset {spec.name}")
    if samples is None:
        assert specs, f"{name}: give samples= or a dataset to check with"
        ds = specs[0].build("train", **(dataset_options or {}))
        samples = [ds[i][name] for i in range(min(6, len(ds)))]
    samples = [modality.validate(s, f"sample {i}") for i, s in enumerate(samples)]
    assert len(samples) >= 2, "the kit needs at least two samples"

    # collate / split round trip
    batch = modality.collate(samples)
    back = modality.split(batch)
    assert _close(list(back), list(samples), atol), f"{name}: split(collate(samples)) != samples"
    report.passed.append("collate round trip")

    # autoencoder shapes: decode(encode(x)) has the batch's form
    ae = modality.autoencoder()
    latent = batch
    if ae is not None:
        with torch.no_grad():
            latent = ae.encode(batch)
            recon = ae.decode(latent)
        assert type(recon) is type(batch), f"{name}: autoencoder.decode returns {type(recon)}, batch is {type(batch)}"
        if isinstance(batch, torch.Tensor):
            assert recon.shape == batch.shape, f"{name}: autoencoder round trip shape {recon.shape} != {batch.shape}"
        losses = ae.loss(batch)
        assert "loss" in losses and torch.isfinite(losses["loss"]), f"{name}: autoencoder.loss needs a finite 'loss'"
        report.passed.append("autoencoder shapes")
    else:
        report.skipped["autoencoder shapes"] = "no autoencoder"

    # tokenizer round trip, shapes and dtypes
    tokens = modality.tokenizer.encode(latent)
    check_tokens(tokens, modality, len(samples))
    assert _close(modality.tokenizer.decode(tokens), latent, atol), f"{name}: tokenizer.decode(encode(x)) != x"
    report.passed.append("tokenizer round trip")

    # layout gives what encode gives for the default size, and variable sizes pad with masks
    blank = modality.tokenizer.layout(3)
    check_tokens(blank, modality, 3)
    if sizes:
        parts = [modality.tokenizer.layout(1, s) for s in sizes]
        for s, p in zip(sizes, parts):
            check_tokens(p, modality, 1)
        padded = pad_tokens(parts)
        for i, p in enumerate(parts):
            assert int(padded.mask[i].sum()) == int(p.mask.sum()), f"{name}: mask lost tokens of size {sizes[i]}"
        lengths = {int(p.mask.sum()) for p in parts}
        assert len(lengths) > 1, f"{name}: sizes {list(sizes)} all give the same token count"
        report.passed.append("variable-length layouts")
    else:
        report.skipped["variable-length layouts"] = "no sizes given"

    # path endpoints: t = 0 is the data, t = 1 is the noise
    path = modality.path
    x0 = tokens.values
    eps = path.prior(x0.shape, generator=torch.Generator().manual_seed(0))
    assert eps.shape == x0.shape, f"{name}: path.prior gave {tuple(eps.shape)}, wanted {tuple(x0.shape)}"
    b = x0.shape[0]
    at0 = path.interpolate(x0, eps, torch.zeros(b))
    at1 = path.interpolate(x0, eps, torch.ones(b))
    assert torch.allclose(at0.x_t, path.project(x0), atol=1e-5), f"{name}: path at t=0 is not the data"
    assert torch.allclose(at1.x_t, path.project(eps), atol=1e-5), f"{name}: path at t=1 is not the noise"
    report.passed.append("path endpoints")

    # codec write -> read round trip
    if modality.codec is not None:
        codec = modality.codec
        assert codec.extensions, f"{name}: codec.extensions is empty"
        written = codec.write_all(samples, tmp_path / f"{name}_codec")
        assert written and all(p.exists() for p in written), f"{name}: codec.write_all wrote nothing"
        read = [s for p in written for s in codec.read_all(p)]
        assert len(read) == len(samples), f"{name}: wrote {len(samples)} samples, read back {len(read)}"
        tol = getattr(codec, "round_trip_atol", atol)
        for i, (a, r) in enumerate(zip(samples, read)):
            assert _close(a, r, tol), f"{name}: codec round trip changed sample {i}"
        report.passed.append("codec round trip")
        check_codec_damage(modality, written[0], tmp_path / f"{name}_damaged")
        report.passed.append("codec damaged files")
    else:
        report.skipped["codec round trip"] = "no codec"
        report.skipped["codec damaged files"] = "no codec"

    # metrics rank real-vs-real above real-vs-noise
    metrics = modality.metrics()
    if metrics:
        real = samples
        noisy = _noise_like(modality, samples)
        for m in metrics.values():
            same, diff = m(real, real), m(real, noisy)
            better = same < diff if m.lower_is_better else same > diff
            assert better, f"{name}: metric {m.name!r} scores real-vs-real {same} no better than real-vs-noise {diff}"
        report.passed.append("metrics")
    else:
        report.skipped["metrics"] = "no metrics"
    return report


def damaged_files(good: Path, out_dir: Path, count: int = 24, seed: int = 0) -> list[Path]:
    """Damaged copies of the file ``good`` in ``out_dir``, all with its suffix(es).

    An empty file, random bytes (short and long), ``good`` cut at random lengths, and
    ``good`` with a few random bytes overwritten: what a crashed download or a full disk leaves.
    """
    raw = Path(good).read_bytes()
    rng = np.random.default_rng(seed)
    suffix = "".join(Path(good).suffixes)
    blobs = [b"", rng.bytes(16), rng.bytes(4096)]
    cuts = sorted({int(c) for c in rng.integers(1, max(len(raw), 2), count // 2)})
    blobs += [raw[:c] for c in cuts]
    for _ in range(count - len(blobs)):
        flipped = bytearray(raw)
        for k in rng.integers(0, max(len(raw), 1), 4):
            if raw:
                flipped[int(k)] = int(rng.integers(256))
        blobs.append(bytes(flipped))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, blob in enumerate(blobs):
        path = out_dir / f"damaged_{i:03d}{suffix}"
        path.write_bytes(blob)
        paths.append(path)
    return paths


def read_or_data_error(modality: Modality, codec: Codec, path: Path) -> str | None:
    """Read ``path`` and validate what it gives: None if valid samples, else the DataError's message.

    Any other exception is an AssertionError: a damaged file must raise DataError.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged file may warn (skipped residues...) before it fails
            samples = codec.read_all(path)
            for i, sample in enumerate(samples):
                modality.validate(sample, f"{path} sample {i}")
    except DataError as exc:
        return str(exc)
    except Exception as exc:
        raise AssertionError(f"{modality.name}: codec.read_all({path.name}) raised {type(exc).__name__}: {exc}; "
                             "a damaged file must raise flowcore.errors.DataError naming it") from exc
    return None


def check_codec_damage(modality: Modality, good: Path, out_dir: Path, count: int = 24) -> None:
    """Damaged copies of a written file read back valid samples or raise a DataError naming the file."""
    for path in damaged_files(good, out_dir, count):
        message = read_or_data_error(modality, modality.codec, path)
        assert message is None or path.name in message, (
            f"{modality.name}: the DataError for a damaged file does not name it: {message!r}")
        path.unlink()


def _noise_like(modality: Modality, samples: Sequence[Any]) -> list[Any]:
    """Samples decoded from pure prior noise tokens: what an untrained model would give."""
    ae = modality.autoencoder()
    batch = modality.collate(samples)
    with torch.no_grad():
        tokens = modality.tokenizer.encode(ae.encode(batch) if ae is not None else batch)
        g = torch.Generator().manual_seed(1)
        noise = modality.path.prior(tokens.values.shape, generator=g) * 3
        latent = modality.tokenizer.decode(tokens.with_values(noise))
        batch = ae.decode(latent) if ae is not None else latent
    return modality.split(batch)
