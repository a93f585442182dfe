"""Conformance kit: the checks every Modality must pass. Plugin tests call it.

    from flowcore.testing import check_plugin
    def test_contract(tmp_path):
        check_plugin("mything", tmp_path, datasets=["mything_demo"])

:func:`check_plugin` runs everything on a registered modality: :func:`check_modality` on the
built Modality, :func:`check_hook_module_is_light` and :func:`check_options_reject_typos`.
With flowcore installed, pytest also gets the fixtures of :mod:`flowcore.pytest_plugin`
(``flowcore_registry``, ``flowcore_cache``, ``flowcore_check``).

Each check raises ``AssertionError`` with a message that says what differs (shapes, dtypes,
the extension, the largest error and where it is) and what the plugin must fix. The checks
compare against something true: round trips return their input, the path's endpoints are the
data and the noise, dataset items have the form of what generation produces, metrics rank
real-vs-real above real-vs-noise, and a codec given a damaged file (random bytes, a written
sample cut short) raises DataError or reads back valid samples, never another exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from flowcore.errors import ConfigError, DataError
from flowcore.modality import Codec, Modality, Tokens
from flowcore.registry import Registry, get_registry
from flowcore.spec import DatasetSpec

#: modules a hook module must not import (discovery and ``flowcore --help`` stay fast)
HEAVY_MODULES = ("torch", "lightning", "numpy", "scipy", "pandas", "PIL")
#: an option name no plugin has: building with it must be a ConfigError
TYPO = "no_such_option"


@dataclass
class ConformanceReport:
    modality: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- differences


def difference(a: Any, b: Any, atol: float, where: str = "") -> str | None:
    """None when ``a`` and ``b`` agree (floats within ``atol``), else the first difference in words.

    Tensors and arrays compare shape, then values: "shape (3, 8) vs (3, 9)" or "max abs
    difference 0.031 at index (2, 5): 0.5 vs 0.469 (atol 1e-05)". Dicts, lists and tuples are
    compared item by item, and the message names the item (``['wave'][2]``). NaN equals NaN.
    """
    return _walk(a, b, where, lambda x, y, at: _value_difference(x, y, atol, at), True, "vs")


def form_difference(item: Any, reference: Any, same_shape: bool, where: str = "") -> str | None:
    """None when ``item`` has the form of ``reference`` (tensor dtypes, dims, shapes if ``same_shape``).

    ``reference`` is a sample as generation produces it (:func:`generated_samples`); a dataset
    item that is float64 where generation gives float32, or that has a channel more, differs.
    Python numbers, strings and None are compared by kind (an int where a str is expected).
    """
    return _walk(item, reference, where, lambda x, y, at: _form_difference(x, y, same_shape, at), same_shape,
                 "where generation gives")


def _walk(a: Any, b: Any, where: str, leaf: Any, same_length: bool, versus: str) -> str | None:
    """The first difference of two nested dicts / lists: keys, lengths (``same_length``), then ``leaf``'s."""
    at = f"{where}: " if where else ""
    if not (_is_array(a) or _is_array(b)):
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            if set(a) != set(b):
                return f"{at}keys {sorted(map(str, a))} {versus} {sorted(map(str, b))}"
            pairs = [(a[k], b[k], f"{where}[{k!r}]") for k in a]
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if same_length and len(a) != len(b):
                return f"{at}length {len(a)} {versus} {len(b)}"
            pairs = [(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))]
        else:
            return leaf(a, b, at)
        return next((found for x, y, w in pairs if (found := _walk(x, y, w, leaf, same_length, versus))), None)
    return leaf(a, b, at)


def _value_difference(a: Any, b: Any, atol: float, at: str) -> str | None:
    if _is_array(a) or _is_array(b):
        try:
            ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        except (TypeError, ValueError, RuntimeError):
            return None if _equal(a, b) else f"{at}{_short(a)} vs {_short(b)}"
        if ta.shape != tb.shape:
            return f"{at}shape {tuple(ta.shape)} vs {tuple(tb.shape)}"
        if ta.numel() == 0:
            return None
        if ta.is_floating_point() or tb.is_floating_point() or ta.is_complex() or tb.is_complex():
            da, db = ta.detach().cpu().double(), tb.detach().cpu().double()
            both_nan = da.isnan() & db.isnan()
            err = (da - db).abs().masked_fill(both_nan, 0).nan_to_num(nan=float("inf")).flatten()
            worst = int(err.argmax())
            if float(err[worst]) <= atol:
                return None
            index = tuple(int(i) for i in np.unravel_index(worst, tuple(ta.shape)))
            return (f"{at}max abs difference {float(err[worst]):.4g} at index {index}: "
                    f"{float(da.flatten()[worst]):.6g} vs {float(db.flatten()[worst]):.6g} (atol {atol:g})")
        unequal = ta.cpu() != tb.cpu()
        if not unequal.any():
            return None
        first = tuple(int(i) for i in unequal.nonzero()[0]) if ta.dim() else ()
        return (f"{at}{int(unequal.sum())} of {ta.numel()} entries differ, the first at index {first}: "
                f"{ta[first].item()} vs {tb[first].item()}")
    if _is_real(a) and _is_real(b) and not (isinstance(a, int) and isinstance(b, int)):
        if a != a and b != b:  # NaN
            return None
        return None if abs(float(a) - float(b)) <= atol else f"{at}{a!r} vs {b!r} (atol {atol:g})"
    return None if _equal(a, b) else f"{at}{_short(a)} vs {_short(b)}"


def _form_difference(item: Any, reference: Any, same_shape: bool, at: str) -> str | None:
    if _is_array(item) or _is_array(reference):
        if not (_is_array(item) and _is_array(reference)):
            return f"{at}{type(item).__name__} where generation gives {type(reference).__name__}"
        ti, tr = torch.as_tensor(item), torch.as_tensor(reference)
        if ti.dtype != tr.dtype:
            return f"{at}dtype {_dtype(item)} where generation gives {_dtype(reference)}"
        if ti.dim() != tr.dim() or (same_shape and ti.shape != tr.shape):
            return f"{at}shape {tuple(ti.shape)} where generation gives {tuple(tr.shape)}"
        return None
    if item is None or reference is None:
        return None  # a missing value
    if _kind(item) != _kind(reference):
        return f"{at}{type(item).__name__} {_short(item)} where generation gives {type(reference).__name__}"
    return None


def _is_array(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _kind(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "bool"
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, (float, np.floating)):
        return "float"
    if isinstance(x, (list, tuple)):
        return "sequence"
    return type(x).__name__


def _dtype(x: Any) -> str:
    return str(torch.as_tensor(x).dtype).removeprefix("torch.")


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an object whose == is not a truth value
        return False


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _close(a: Any, b: Any, atol: float) -> bool:
    return difference(a, b, atol) is None


def _dataset_name(spec: DatasetSpec | None) -> str:
    return f"dataset {spec.name!r}" if spec is not None else "samples="


# ----------------------------------------------------------------------------- tokens


def check_tokens(tokens: Tokens, modality: Modality, batch_size: int, what: str = "tokens") -> None:
    """Shapes and dtypes of values / positions / mask agree with the tokenizer's declaration."""
    tok = modality.tokenizer
    name = modality.name
    assert isinstance(tokens, Tokens), f"{name}: {what}: must be Tokens, got {type(tokens).__name__}"
    b, length, c = tokens.values.shape
    assert b == batch_size, f"{name}: {what} have batch {b}, expected {batch_size}"
    assert c == tok.channels, (
        f"{name}: {what}: values {tuple(tokens.values.shape)} have {c} channels, "
        f"tokenizer.channels says {tok.channels}")
    assert tokens.positions.shape[-1] == tok.position_axes, (
        f"{name}: {what}: positions {tuple(tokens.positions.shape)} have {tokens.positions.shape[-1]} axes, "
        f"tokenizer.position_axes says {tok.position_axes}")
    assert tokens.values.is_floating_point(), (
        f"{name}: {what}: values must be floating point, got {tokens.values.dtype}")
    assert tokens.mask.dtype == torch.bool, f"{name}: {what}: mask must be bool, got {tokens.mask.dtype}"
    empty = (~tokens.mask.any(dim=1)).nonzero().flatten().tolist()
    assert not empty, f"{name}: {what}: samples {empty} have no real token (mask all False)"
    bad = (~torch.isfinite(tokens.values)).nonzero()
    assert not len(bad), f"{name}: {what}: values hold NaN/inf, first at index {tuple(bad[0].tolist())}"
    assert length > 0, f"{name}: {what}: no tokens (L = 0)"


def check_layout_agrees(tokens: Tokens, blank: Tokens, modality: Modality, what: str) -> None:
    """``blank`` (from ``layout``) lays out what ``tokens`` (from ``encode``) hold: dtype, L, positions, mask.

    Generation fills ``layout``'s values with noise and hands them to a network trained on
    ``encode``'s tokens, so the two must agree token for token.
    """
    name = modality.name
    assert blank.values.dtype == tokens.values.dtype, (
        f"{name}: layout gives values of dtype {blank.values.dtype}, encode of {what} gives {tokens.values.dtype}")
    assert blank.values.shape == tokens.values.shape, (
        f"{name}: layout gives values {tuple(blank.values.shape)}, encode of {what} gives "
        f"{tuple(tokens.values.shape)} ({blank.values.shape[1]} vs {tokens.values.shape[1]} tokens per sample); "
        "generation starts from layout, so the network would see another length than it was trained on")
    found = difference(blank.positions, tokens.positions, 1e-6)
    assert found is None, f"{name}: layout's positions differ from encode's ({what}): {found}"
    found = difference(blank.mask, tokens.mask, 0)
    assert found is None, f"{name}: layout's mask differs from encode's ({what}): {found}"


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


def _encode(modality: Modality, ae: Any, samples: Sequence[Any]) -> tuple[Any, Any, Tokens]:
    batch = modality.collate(samples)
    with torch.no_grad():
        latent = ae.encode(batch) if ae is not None else batch
    return batch, latent, modality.tokenizer.encode(latent)


def generated_samples(modality: Modality, count: int, size: Any = None, scale: float = 1.0, seed: int = 0) -> list:
    """What an untrained model generates: prior noise (times ``scale``) on ``layout(count, size)``,
    decoded by the tokenizer and the autoencoder and split into samples."""
    tokens = modality.tokenizer.layout(count, size)
    return decode_tokens(modality, tokens.with_values(_prior(modality, tokens.values, seed) * scale))


def decode_tokens(modality: Modality, tokens: Tokens) -> list:
    ae = modality.autoencoder()
    with torch.no_grad():
        latent = modality.tokenizer.decode(tokens)
        return modality.split(ae.decode(latent) if ae is not None else latent)


def _prior(modality: Modality, like: torch.Tensor, seed: int) -> torch.Tensor:
    return modality.path.prior(like.shape, generator=torch.Generator().manual_seed(seed)).to(like.dtype)


# ----------------------------------------------------------------------------- the kit


def check_modality(modality: Modality, tmp_path: Path, datasets: Sequence[str | DatasetSpec] = (),
                   samples: Sequence[Any] | None = None, registry: Registry | None = None, atol: float = 1e-5,
                   dataset_options: dict[str, Any] | None = None,
                   sizes: Sequence[Any] = ()) -> ConformanceReport:
    """Run every conformance check on ``modality``; return what passed and what was skipped.

    modality:         a built Modality (``registry.modality(name, **options)``)
    tmp_path:         a folder for the codec's files
    datasets:         names (looked up in ``registry``) or specs; each must yield valid samples
                      of the form generation produces (same dtypes; same shapes without ``sizes``)
    samples:          a few real samples; by default the first items of the first dataset
    atol:             tolerance of the collate, autoencoder-free and tokenizer round trips; the
                      codec's own ``round_trip_atol`` (a number, or ``{extension: number}``)
                      overrides it for the codec round trips
    dataset_options:  keyword arguments of every dataset factory (``data.options``)
    sizes:            for variable-size modalities, two or more ``layout`` sizes to check masks
                      with; without them the modality is fixed-size and ``layout()`` must
                      give the token count and positions ``encode`` gives
    """
    report = ConformanceReport(modality.name)
    name = modality.name
    tmp_path = Path(tmp_path)
    registry = registry or get_registry()
    specs = [registry.dataset(d) if isinstance(d, str) else d for d in datasets]
    ae = modality.autoencoder()
    fixed = not sizes
    reference = generated_samples(modality, 1)[0]

    # every dataset yields valid samples of this modality, of the form generation produces
    first_items: list[Any] = []
    for spec in specs:
        ds = spec.build("train", **(dataset_options or {}))
        assert len(ds) > 0, f"dataset {spec.name!r} is empty"
        items = []
        for i in range(min(4, len(ds))):
            item = ds[i]
            assert isinstance(item, dict) and set(item) == set(spec.modalities), (
                f"dataset {spec.name!r} item {i} must be a dict with keys {list(spec.modalities)}, "
                f"got {_short(item)}")
            modality.validate(item[name], f"dataset {spec.name!r} item {i}")
            found = form_difference(item[name], reference, fixed)
            assert found is None, f"{name}: dataset {spec.name!r} item {i}: {found}"
            items.append(item[name])
        check_batch(modality, ae, items, _dataset_name(spec), fixed)
        first_items = first_items or [ds[i][name] for i in range(min(6, len(ds)))]
        report.passed.append(f"dataset {spec.name}")
    if samples is None:
        assert specs, f"{name}: give samples= or a dataset to check with"
        samples = first_items
    samples = [modality.validate(s, f"sample {i}") for i, s in enumerate(samples)]
    assert len(samples) >= 2, "the kit needs at least two samples"

    # collate / split round trip
    batch = modality.collate(samples)
    back = list(modality.split(batch))
    found = difference(back, list(samples), atol, "sample")
    assert found is None, f"{name}: split(collate(samples)) differs from samples: {found}"
    report.passed.append("collate round trip")

    # autoencoder shapes: decode(encode(x)) has the batch's form
    latent = batch
    if ae is not None:
        with torch.no_grad():
            latent = ae.encode(batch)
            recon = ae.decode(latent)
        assert type(recon) is type(batch), f"{name}: autoencoder.decode returns {type(recon)}, batch is {type(batch)}"
        if isinstance(batch, torch.Tensor):
            assert recon.shape == batch.shape, (
                f"{name}: autoencoder round trip gives shape {tuple(recon.shape)}, the batch is {tuple(batch.shape)}")
        losses = ae.loss(batch)
        assert "loss" in losses and torch.isfinite(losses["loss"]), f"{name}: autoencoder.loss needs a finite 'loss'"
        report.passed.append("autoencoder shapes")
    else:
        report.skipped["autoencoder shapes"] = "no autoencoder"

    # tokenizer round trip, shapes and dtypes
    tokens = modality.tokenizer.encode(latent)
    check_tokens(tokens, modality, len(samples), "encode(samples)")
    found = difference(modality.tokenizer.decode(tokens), latent, atol, "latent")
    assert found is None, f"{name}: tokenizer.decode(encode(x)) differs from x: {found}"
    report.passed.append("tokenizer round trip")

    # layout lays out what encode gives; variable sizes pad with masks
    blank = modality.tokenizer.layout(3)
    check_tokens(blank, modality, 3, "layout(3)")
    if fixed:
        check_layout_agrees(tokens, modality.tokenizer.layout(len(samples)), modality, "samples")
        report.passed.append("layout agrees with encode")
    else:
        assert blank.values.dtype == tokens.values.dtype, (
            f"{name}: layout gives values of dtype {blank.values.dtype}, encode gives {tokens.values.dtype}")
        parts = [modality.tokenizer.layout(1, s) for s in sizes]
        for s, p in zip(sizes, parts):
            check_tokens(p, modality, 1, f"layout(1, {s!r})")
        padded = pad_tokens(parts)
        for i, p in enumerate(parts):
            assert int(padded.mask[i].sum()) == int(p.mask.sum()), f"{name}: mask lost tokens of size {sizes[i]}"
        lengths = {int(p.mask.sum()) for p in parts}
        assert len(lengths) > 1, f"{name}: sizes {list(sizes)} all give the same token count {lengths.pop()}"
        report.passed.append("variable-length layouts")
    report.skipped.update({"variable-length layouts": "no sizes given"} if fixed else
                          {"layout agrees with encode": "variable sizes: checked per size"})

    # path endpoints: t = 0 is the data, t = 1 is the noise
    path = modality.path
    x0 = tokens.values
    eps = path.prior(x0.shape, generator=torch.Generator().manual_seed(0))
    assert eps.shape == x0.shape, f"{name}: path.prior gave {tuple(eps.shape)}, wanted {tuple(x0.shape)}"
    b = x0.shape[0]
    at0 = path.interpolate(x0, eps, torch.zeros(b))
    at1 = path.interpolate(x0, eps, torch.ones(b))
    found = difference(at0.x_t, path.project(x0), 1e-5)
    assert found is None, f"{name}: path at t=0 is not the data: {found}"
    found = difference(at1.x_t, path.project(eps), 1e-5)
    assert found is None, f"{name}: path at t=1 is not the noise: {found}"
    report.passed.append("path endpoints")

    # codec write -> read round trips, in every extension
    if modality.codec is not None:
        written = check_codec_round_trip(modality, samples, tmp_path / f"{name}_codec", atol)
        report.passed.append("codec round trip")
        check_codec_damage(modality, written, tmp_path / f"{name}_damaged")
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
            assert better, (f"{name}: metric {m.name!r} scores real-vs-real {same:.6g} no better than "
                            f"real-vs-noise {diff:.6g} ({'lower' if m.lower_is_better else 'higher'} is better)")
        report.passed.append("metrics")
    else:
        report.skipped["metrics"] = "no metrics"
    return report


def check_batch(modality: Modality, ae: Any, items: Sequence[Any], what: str, fixed: bool) -> Tokens:
    """``items`` collate and encode to valid tokens of layout's dtype (and, ``fixed``, layout's form)."""
    _, _, tokens = _encode(modality, ae, items)
    check_tokens(tokens, modality, len(items), f"encode({what} items)")
    blank = modality.tokenizer.layout(len(items))
    if fixed:
        check_layout_agrees(tokens, blank, modality, f"{what} items")
    else:
        assert blank.values.dtype == tokens.values.dtype, (
            f"{modality.name}: encode of {what} items gives values of dtype {tokens.values.dtype}, "
            f"layout gives {blank.values.dtype}")
    return tokens


def _codec_atol(codec: Codec, extension: str, atol: float) -> float:
    tol = getattr(codec, "round_trip_atol", None)
    if isinstance(tol, Mapping):
        tol = tol.get(extension)
    return atol if tol is None else float(tol)


def check_codec_round_trip(modality: Modality, samples: Sequence[Any], out_dir: Path, atol: float) -> list[Path]:
    """``write_all`` then ``read_all`` gives the samples back; so does ``write`` then ``read_all`` in
    each of ``codec.extensions`` but its ``read_only_extensions``. Returns one written file of each."""
    name, codec = modality.name, modality.codec
    assert codec.extensions, f"{name}: codec.extensions is empty"
    for ext in codec.extensions:
        assert ext.startswith(".") and ext == ext.lower(), (
            f"{name}: codec extension {ext!r} must be lower case and start with a dot")
    assert codec.extensions[0] not in codec.read_only_extensions, (
        f"{name}: the default extension {codec.extensions[0]!r} is read-only: samples are written in it")
    written = codec.write_all(samples, out_dir / "write_all")
    assert written and all(p.exists() for p in written), f"{name}: codec.write_all wrote nothing"
    read = [s for p in written for s in codec.read_all(p)]
    assert len(read) == len(samples), f"{name}: codec.write_all wrote {len(samples)} samples, read_all read {len(read)}"
    tol = _codec_atol(codec, codec.extensions[0], atol)
    for i, (a, r) in enumerate(zip(samples, read)):
        found = difference(r, a, tol)
        assert found is None, (f"{name}: codec round trip ({codec.extensions[0]}, write_all -> read_all) "
                               f"changed sample {i}: {found}")
    files = []
    for ext in codec.extensions:
        if ext in codec.read_only_extensions:
            continue
        tol = _codec_atol(codec, ext, atol)
        for i, sample in enumerate(samples):
            path = out_dir / ext.lstrip(".") / f"sample_{i}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            codec.write(sample, path)
            assert path.exists(), f"{name}: codec.write(sample {i}, {path.name}) wrote no file"
            back = codec.read_all(path)
            assert len(back) == 1, f"{name}: codec.write wrote one sample to {path.name}, read_all read {len(back)}"
            found = difference(back[0], sample, tol)
            assert found is None, f"{name}: codec round trip ({ext}) changed sample {i}: {found}"
            if i == 0:
                files.append(path)
    return files


def check_hook_module_is_light(module: str, heavy: Sequence[str] = HEAVY_MODULES) -> None:
    """Importing the hook module ``module`` (in a fresh interpreter) imports none of ``heavy``."""
    code = (f"import importlib, json, sys\nimportlib.import_module({module!r})\n"
            f"print(json.dumps(sorted(m for m in {list(heavy)!r} if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"importing the hook module {module!r} failed: {out.stderr.strip()[-500:]}"
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not loaded, (f"importing the hook module {module!r} imports {loaded}: keep it to specs and options "
                        "models, and name factories as 'module:attr' strings")


def check_options_reject_typos(registry: Registry, name: str, datasets: Sequence[str] = ()) -> None:
    """A misspelt option of the modality ``name`` (and of each dataset) is a ConfigError naming it."""
    spec = registry.spec(name)
    targets = [(f"modality {name!r}", spec.options, lambda: spec.build(**{TYPO: 1}))]
    targets += [(f"dataset {d!r}", registry.dataset(d).options,
                 lambda d=d: registry.dataset(d).build("train", **{TYPO: 1})) for d in datasets]
    for what, model, build in targets:
        try:
            build()
        except ConfigError as exc:
            assert TYPO in str(exc), f"{what}: the ConfigError for option {TYPO!r} does not name it: {exc}"
            continue
        except Exception as exc:
            raise AssertionError(
                f"{what}: an unknown option {TYPO!r} raised {type(exc).__name__}: {exc}, not a ConfigError; "
                + ("give the spec options=<an Options model>" if model is None else
                   f"{model.__name__} must refuse unknown keys (subclass flowcore.schema.Options)")) from exc
        raise AssertionError(f"{what}: an unknown option {TYPO!r} was accepted; "
                             + ("give the spec options=<an Options model>" if model is None else
                                f"{model.__name__} must refuse unknown keys (subclass flowcore.schema.Options)"))


def hook_module(registry: Registry, name: str) -> str | None:
    """The import name of the hook module of the plugin that registered modality ``name``."""
    record = registry.plugin_of(name)
    for impl in registry.pm.hook.flowcore_modalities.get_hookimpls():
        if impl.plugin_name == record.name:
            return getattr(impl.plugin, "__name__", None)
    return None


def check_plugin(name: str, tmp_path: Path, registry: Registry | None = None, options: Mapping[str, Any] | None = None,
                 datasets: Sequence[str] | None = None, heavy: Sequence[str] = HEAVY_MODULES,
                 **kwargs: Any) -> ConformanceReport:
    """Every contract check on the registered modality ``name``, in one call.

    Builds it with ``options`` (the config's ``modalities.<name>``), runs :func:`check_modality`
    with ``datasets`` (default: every dataset of its spec) and ``kwargs`` (``samples``,
    ``sizes``, ``atol``, ``dataset_options``), then checks that its hook module imports none of
    ``heavy`` and that its options models (and its datasets') refuse a typo.
    """
    registry = registry or get_registry()
    spec = registry.spec(name)
    datasets = [d.name for d in spec.datasets] if datasets is None else list(datasets)
    report = check_modality(registry.modality(name, **(options or {})), tmp_path, datasets=datasets,
                            registry=registry, **kwargs)
    module = hook_module(registry, name)
    if module is not None:
        check_hook_module_is_light(module, heavy)
        report.passed.append("hook module is light")
    else:
        report.skipped["hook module is light"] = "the plugin is an object, not a module"
    check_options_reject_typos(registry, name, datasets)
    report.passed.append("options refuse typos")
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


def check_codec_damage(modality: Modality, good: Path | Sequence[Path], out_dir: Path, count: int = 24) -> None:
    """Damaged copies of written files (one per extension) read back valid samples or raise a
    DataError naming the file."""
    for file in [good] if isinstance(good, (str, Path)) else good:
        for path in damaged_files(Path(file), out_dir, count):
            message = read_or_data_error(modality, modality.codec, path)
            assert message is None or path.name in message, (
                f"{modality.name}: the DataError for a damaged {path.suffix} file does not name it: {message!r}")
            path.unlink()


def _noise_like(modality: Modality, samples: Sequence[Any]) -> list[Any]:
    """Samples decoded from prior noise (times 3) on the samples' own tokens: what an untrained model gives."""
    _, _, tokens = _encode(modality, modality.autoencoder(), samples)
    return decode_tokens(modality, tokens.with_values(_prior(modality, tokens.values, 1) * 3))
