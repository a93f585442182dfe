"""Where samples come from: a plugin's named dataset, a folder of files, a manifest, or
datasets of several plugins paired by a shared sample (``data.paired``).

Every source yields items ``{modality: sample}`` checked by each modality's ``validate``.
File data is split deterministically: an item's split follows from a hash of the seed and
the item's key, so adding files never moves an existing item to another split.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler

from flowcore.errors import ConfigError, DataError
from flowcore.io import atomic_path
from flowcore.modality import Codec
from flowcore.splits import SPLITS, keyed_split
from flowcore.train.bundle import Bundle, collate
from flowcore.train.config import Config


class Validated(Dataset):
    """Items of ``base`` restricted to the configured modalities, each checked by ``validate``.

    An index whose samples ``validate`` returned unchanged (the same objects) is not checked
    again on later epochs: for small samples (points, labels) the check would otherwise cost
    more than the training step. Samples ``validate`` converts (a class name to its index)
    go through it every time. Messages name ``where`` (the dataset or data path and split),
    the item, and, when ``base`` has an ``item_source(i)`` (file items do), the file it came from.
    """

    def __init__(self, base: Dataset, bundles: dict[str, Bundle], where: str, limit: int | None = None):
        self.base, self.bundles, self.where = base, bundles, where
        self.length = len(base) if limit is None else min(limit, len(base))
        self.checked = bytearray(self.length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        if self.checked[i]:
            return {name: item[name] for name in self.bundles}
        out = {}
        for name, b in self.bundles.items():
            if name not in item:
                raise DataError(f"{self.item_where(i)}: no {name!r} sample (it has {sorted(item)})")
            out[name] = b.modality.validate(item[name], self.item_where(i))
        self.checked[i] = all(out[name] is item[name] for name in self.bundles)
        return out

    def item_where(self, i: int) -> str:
        """Where item ``i`` comes from, for messages: 'data/points (train) item 9 (data/points/a.csv, sample 10)'."""
        source = getattr(self.base, "item_source", None)
        return f"{self.where} item {i}" + (f" ({source(i)})" if source is not None else "")


class Collate:
    """A picklable ``collate_fn`` (DataLoader workers need one); cached latents are stacked."""

    def __init__(self, bundles: dict[str, Bundle], latent: Sequence[str] = ()):
        self.bundles, self.latent = bundles, set(latent)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        raw = {n: b for n, b in self.bundles.items() if n not in self.latent}
        out = collate(raw, items)
        out.update({n: torch.stack([item[n] for item in items]) for n in self.latent})
        return out


class WithLatents(Dataset):
    """``base`` (the other modalities) plus precomputed latents ``{modality: [N, ...]}``."""

    def __init__(self, base: Validated, latents: dict[str, torch.Tensor]):
        self.base, self.latents = base, latents

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i] if self.base.bundles else {}
        item.update({n: v[i] for n, v in self.latents.items()})
        return item


@torch.no_grad()
def cached_latents(config: Config, bundles: dict[str, Bundle], dataset: Validated) -> dict[str, torch.Tensor]:
    """The split's latents through each frozen autoencoder, cached in ``<out>/latents/train.safetensors``.

    Autoencoders encode deterministically (the contract's ``encode`` returns the mean), so a
    latent computed once is the latent of every epoch; a resumed run reads the file back.
    """
    names = [n for n, b in bundles.items() if b.autoencoder is not None]
    path = Path(config.out_dir) / "latents" / "train.safetensors"
    if path.is_file():
        cached = load_file(str(path))
        if set(cached) == set(names) and all(len(v) == len(dataset) for v in cached.values()):
            return cached
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for batch in loader(dataset, bundles, config.eval.batch_size):
        for n in names:
            latent = bundles[n].autoencoder.encode(batch[n])
            if not isinstance(latent, torch.Tensor):
                raise ConfigError(f"{config.source}: data.cache_latents: {n!r} latents are "
                                  f"{type(latent).__name__}, not tensors; turn caching off")
            parts[n].append(latent.detach().float().cpu())
    try:
        latents = {n: torch.cat(v).contiguous() for n, v in parts.items()}
    except RuntimeError as exc:
        raise ConfigError(f"{config.source}: data.cache_latents: latents differ in shape across samples ({exc}); "
                          "turn caching off for variable-size data") from exc
    with atomic_path(path) as tmp:
        save_file(latents, str(tmp))
    return latents


# ----------------------------------------------------------------------------- files


class FileItems(Dataset):
    """Items from files or values: each entry is ``{modality: ("file", path) | ("value", v) | ("sample", s)}``."""

    def __init__(self, entries: list[dict[str, tuple[str, Any]]], codecs: dict[str, Codec | None],
                 sources: list[str] | None = None):
        self.entries, self.codecs, self.sources = entries, codecs, sources

    def __len__(self) -> int:
        return len(self.entries)

    def item_source(self, i: int) -> str:
        """The file (and place in it) item ``i`` was read from."""
        if self.sources is not None:
            return self.sources[i]
        files = [str(v) for kind, v in self.entries[i].values() if kind == "file"]
        return ", ".join(files) or "values"

    def __getitem__(self, i: int) -> dict[str, Any]:
        out = {}
        for name, (kind, v) in self.entries[i].items():
            out[name] = self.codecs[name].read(v) if kind == "file" else v
        return out


def _reads_many(codec: Codec) -> bool:
    """A codec whose files hold several samples overrides ``read_all``."""
    return type(codec).read_all is not Codec.read_all


def folder_entries(folder: Path, name: str, codec: Codec) -> list[tuple[str, dict[str, tuple[str, Any]]]]:
    """(key, entry) for every sample in the files of ``folder`` that ``codec`` reads."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in codec.extensions)
    if not files:
        raise DataError(f"{folder}: no files with suffix {list(codec.extensions)} for modality {name!r}")
    out = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if _reads_many(codec):
            out += [(f"{rel}#{j}", {name: ("sample", s)}) for j, s in enumerate(codec.read_all(f))]
        else:
            out.append((rel, {name: ("file", f)}))
    return out


def manifest_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header = modality names) or JSON Lines manifest."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read manifest: {exc}") from exc
    if path.suffix.lower() == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}, line {lineno}: not JSON: {exc}") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}, line {lineno}: each line must be a JSON object")
                rows.append(row)
        return rows
    return list(csv.DictReader(text.splitlines()))


def _csv_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def manifest_entries(path: Path, bundles: dict[str, Bundle]) -> list[tuple[str, dict[str, tuple[str, Any]]]]:
    """(key, entry) per manifest row; cells are file paths (relative to the manifest) or values."""
    rows = manifest_rows(path)
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    missing = [n for n in bundles if n not in rows[0]]
    if missing:
        raise ConfigError(f"{path}: the manifest has no column {missing[0]!r} for modality "
                          f"modalities.{missing[0]} (columns: {sorted(rows[0])})")
    out = []
    is_csv = path.suffix.lower() != ".jsonl"
    for i, row in enumerate(rows):
        entry = {}
        for name, b in bundles.items():
            cell = row.get(name)
            codec = b.modality.codec
            where = f"{path}, row {i + 1}, column {name!r}"
            if cell is None or cell == "":
                raise DataError(f"{where}: empty cell")
            if isinstance(cell, str) and codec is not None and Path(cell).suffix.lower() in codec.extensions:
                file = (path.parent / cell).resolve()
                if not file.is_file():
                    raise DataError(f"{where}: file {file} does not exist")
                entry[name] = ("file", file)
            else:
                entry[name] = ("value", _csv_value(cell) if is_csv and isinstance(cell, str) else cell)
        out.append((f"row{i}", entry))
    return out


def file_splits(config: Config, bundles: dict[str, Bundle]) -> dict[str, Dataset]:
    """train/val/test datasets from ``data.path`` (a folder or a .csv/.jsonl manifest)."""
    data = config.data
    path = Path(data.path)
    if path.is_dir():
        name = data.modality or (next(iter(bundles)) if len(bundles) == 1 else None)
        if name is None:
            raise ConfigError(f"{config.source}: data.modality: a folder holds one modality; say which of "
                              f"{list(bundles)} (or use a manifest for paired data)")
        codec = bundles[name].modality.codec
        if codec is None:
            raise ConfigError(f"{config.source}: data.path: modality {name!r} has no codec to read files with")
        entries = folder_entries(path, name, codec)
    elif path.suffix.lower() in (".csv", ".jsonl") and path.is_file():
        entries = manifest_entries(path, bundles)
    else:
        raise ConfigError(f"{config.source}: data.path: {path} is neither a folder nor a .csv/.jsonl manifest")
    codecs = {n: b.modality.codec for n, b in bundles.items()}
    parts: dict[str, list] = {s: [] for s in SPLITS}
    fractions = {"test": data.test_fraction, "val": data.val_fraction}
    sources: dict[str, list] = {s: [] for s in SPLITS}
    for key, entry in entries:
        split = keyed_split(key, fractions, seed=config.seed)
        parts[split].append(entry)
        sources[split].append(_key_source(path, key))
    return {s: FileItems(parts[s], codecs, sources[s]) for s in SPLITS}


def _key_source(path: Path, key: str) -> str:
    """A folder entry's key ('a.csv#9', 'b.png') or a manifest's ('row9') -> the file (and place) it names."""
    if not path.is_dir():
        return f"{path}, row {int(key[3:]) + 1}"
    file, _, j = key.partition("#")
    return f"{path / file}, sample {int(j) + 1}" if j else str(path / file)


# ----------------------------------------------------------------------------- paired datasets


class PairedItems(Dataset):
    """Each item of ``parts[0]`` joined with one item of every other part holding the same ``key`` sample.

    The partner is drawn at random from the items sharing the key (seeded), so two datasets that
    only share a class (an MNIST digit and a spoken one) become one paired dataset. It is drawn
    once, or with ``fresh`` anew each time the item is read (from torch's global generator, which
    the training loop seeds), so training sees many pairs of each item. Each part keeps its own
    split, so held-out images and held-out voices stay held out.
    """

    def __init__(self, parts: Sequence[Dataset], names: Sequence[str], key: str, seed: int = 0,
                 fresh: bool = False):
        self.parts, self.names, self.key, self.fresh = list(parts), list(names), key, fresh
        anchor_keys = [self._key(0, i) for i in range(len(self.parts[0]))]
        g = torch.Generator().manual_seed(int(seed))
        self.partners: list[list[int]] = []
        #: per other part, the items of the anchor's key, for fresh draws
        self.groups_of: list[list[list[int]]] = []
        for p in range(1, len(self.parts)):
            groups: dict[Any, list[int]] = {}
            for j in range(len(self.parts[p])):
                groups.setdefault(self._key(p, j), []).append(j)
            draws = torch.randint(0, 2**62, (len(anchor_keys),), generator=g).tolist()
            chosen = []
            for i, (k, r) in enumerate(zip(anchor_keys, draws)):
                if k not in groups:
                    raise DataError(f"data.paired: {self.names[p]} has no item whose {key!r} is {k!r} to pair with "
                                    f"{self.names[0]} item {i} (it has {sorted(groups, key=str)[:12]})")
                chosen.append(groups[k][r % len(groups[k])])
            self.partners.append(chosen)
            self.groups_of.append([groups[k] for k in anchor_keys])

    def _key(self, part: int, i: int) -> Any:
        item = self.parts[part][i]
        if self.key not in item:
            raise DataError(f"data.paired: {self.names[part]} item {i} has no {self.key!r} sample to pair by "
                            f"(it has {sorted(item)})")
        value = item[self.key]
        return int(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.parts[0][i])
        for part, chosen, groups in zip(self.parts[1:], self.partners, self.groups_of):
            j = groups[i][int(torch.randint(len(groups[i]), ()))] if self.fresh else chosen[i]
            for name, sample in part[j].items():
                item.setdefault(name, sample)
        return item

    def item_source(self, i: int) -> str:
        """The items joined: 'mnist5k item 3 + spoken_digits item 41'."""
        joined = [f"{self.names[0]} item {i}"] + [
            f"a {n} item of the same {self.key}" if self.fresh else f"{n} item {c[i]}"
            for n, c in zip(self.names[1:], self.partners)]
        return " + ".join(joined)


# ----------------------------------------------------------------------------- module


def build_split(config: Config, bundles: dict[str, Bundle], split: str, registry) -> Dataset:
    """One split (train / val / test) of the configured data, validated and limited."""
    data = config.data
    if data.dataset is not None:
        spec = registry.dataset(data.dataset)
        use = split if split in spec.splits else "train"
        base = spec.build(use, **data.options)
        where = f"dataset {data.dataset!r} ({use})"
    elif data.paired:
        parts = []
        for source in data.paired:
            spec = registry.dataset(source.dataset)
            parts.append(spec.build(split if split in spec.splits else "train", **source.options))
        names = [s.dataset for s in data.paired]
        base = PairedItems(parts, names, data.pair_by, config.seed, fresh=data.fresh_pairs and split == "train")
        where = f"paired datasets {' + '.join(names)} ({split})"
    else:
        base = file_splits(config, bundles)[split]
        where = f"{data.path} ({split})"
    if len(base) == 0:
        raise DataError(f"{where}: the {split} split is empty (more data, or change data.*_fraction)")
    return Validated(base, bundles, where, data.limit)


class SeededEpochs:
    """The epoch counter both samplers share: an epoch's order follows from (seed, epoch).

    Lightning calls ``set_epoch`` at each epoch start, so a run resumed from a checkpoint sees
    the orders of the epochs it resumes in, not epoch 0's again (a seeded ``RandomSampler``
    restarts its generator). Without Lightning each iteration takes the next epoch.
    ``resume_at`` makes the next iteration a given epoch's less the entries a run resumed
    mid-epoch trained before its checkpoint.
    """

    seed: int
    epoch: int = 0
    resumed: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, skip: int) -> None:
        """The next iteration is ``epoch``'s less its first ``skip`` entries. Taken when it starts, so
        ``len`` until then is the one the uninterrupted run had (Lightning counts batches from it)."""
        self.resumed = (int(epoch), int(skip))

    def next_epoch(self) -> tuple[torch.Generator, int]:
        """The generator of the current epoch and the entries to skip at its start; the counter moves on."""
        skip = 0
        if self.resumed is not None:
            (self.epoch, skip), self.resumed = self.resumed, None
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.generator(epoch), skip

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + epoch)

    def batches_in(self, epoch: int) -> int | None:
        """The batches of ``epoch`` where they vary from epoch to epoch, else None."""
        return None


class LengthBatches(SeededEpochs, Sampler[list[int]]):
    """Training batches of items of similar length, each at most ``tokens`` tokens once padded.

    Every epoch the items are shuffled and taken in chunks of ``chunk``; a chunk is sorted by
    length and cut greedily into batches whose count x longest stays within ``tokens`` (and
    whose count within ``max_items``); the epoch's batches are then shuffled. Similar lengths
    share a batch, so little is padding, and a step costs about the same whether it holds many
    short items or a few long ones. An item longer than ``tokens`` makes a batch of its own.
    The plan of an epoch follows from (seed, epoch), so ``len`` is exact.

    lengths: the tokens of each item ``[N]``.
    """

    def __init__(self, lengths: Sequence[int], tokens: int, max_items: int, seed: int = 0, chunk: int = 256):
        if tokens < 1 or max_items < 1 or not lengths:
            raise ConfigError(f"LengthBatches: tokens and max_items must be >= 1 and lengths non-empty, "
                              f"got {tokens}, {max_items}, {len(lengths)} items")
        self.lengths = torch.as_tensor(list(lengths))
        self.tokens, self.max_items, self.seed, self.chunk = int(tokens), int(max_items), int(seed), int(chunk)
        self.epoch = 0
        self.sizes: dict[int, int] = {}  # batches per epoch, as counted

    def plan(self, epoch: int) -> list[list[int]]:
        return self._plan(self.generator(epoch))

    def _plan(self, g: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(self.lengths), generator=g)
        batches: list[list[int]] = []
        for part in order.split(self.chunk):
            part = part[self.lengths[part].argsort(stable=True)].tolist()
            batch: list[int] = []
            for i in part:  # ascending: the item joining is the batch's longest
                if batch and (len(batch) + 1 > self.max_items or (len(batch) + 1) * int(self.lengths[i]) > self.tokens):
                    batches.append(batch)
                    batch = []
                batch.append(i)
            batches.append(batch)
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    @property
    def sampler(self) -> LengthBatches:
        """Itself: Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` at each epoch start."""
        return self

    def __iter__(self):
        # A generator: the plan is drawn at the first batch, after Lightning has set the epoch
        # (it creates the iterator before that), so a resumed run gets its epoch's plan.
        g, skip = self.next_epoch()
        yield from self._plan(g)[skip:]

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def batches_in(self, epoch: int) -> int:
        if epoch not in self.sizes:
            self.sizes[epoch] = len(self.plan(epoch))
        return self.sizes[epoch]


class EpochShuffle(SeededEpochs, Sampler[int]):
    """Item indices in an order that follows from (seed, epoch), like ``LengthBatches``' plans."""

    def __init__(self, count: int, seed: int = 0):
        self.count, self.seed, self.epoch = int(count), int(seed), 0

    def __iter__(self):
        g, skip = self.next_epoch()
        yield from torch.randperm(self.count, generator=g).tolist()[skip:]

    def __len__(self) -> int:
        return self.count


def item_lengths(dataset: Dataset, where: str) -> list[int]:
    """Tokens per item of a training set for ``train.batch_tokens``: its base dataset's ``lengths``."""
    base = dataset.base if isinstance(dataset, Validated) else dataset
    lengths = getattr(base, "lengths", None)
    if lengths is None:
        raise ConfigError(f"train.batch_tokens: the dataset of {where} does not say how long its items are (no "
                          "`lengths` attribute); leave batch_tokens unset to batch by train.batch_size")
    return [int(n) for n in list(lengths)[:len(dataset)]]


class FlowDataModule(L.LightningDataModule):
    """Loaders over the configured data; Lightning adds the distributed sampler under DDP."""

    def __init__(self, config: Config, bundles: dict[str, Bundle], registry):
        super().__init__()
        self.config, self.bundles, self.registry = config, bundles, registry
        self.train_set: Dataset | None = None
        self.latent = latent_names(config, bundles)
        self.sampler: SeededEpochs | None = None
        self.resume: dict[str, int] | None = None  # the position saved in the checkpoint resumed from

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train = build_split(self.config, self.bundles, "train", self.registry)
            if self.latent:
                latents = cached_latents(self.config, self.bundles, train)
                rest = {n: b for n, b in self.bundles.items() if n not in self.latent}
                train = WithLatents(Validated(train.base, rest, train.where, self.config.data.limit), latents)
            self.train_set = train

    def position(self) -> tuple[int, int] | None:
        """(epoch, batch index in it) of the next training batch in the data's order, after the
        ``global_step`` batches trained so far; None under DDP (the distributed sampler's order)."""
        if self.trainer is None or self.trainer.world_size > 1 or self.sampler is None:
            return None
        per_epoch = self.trainer.num_training_batches  # Lightning ends an epoch there at the latest
        batches = self.trainer.global_step
        if self.sampler.batches_in(0) is None:
            return divmod(batches, per_epoch)
        epoch = 0
        while batches >= (n := min(self.sampler.batches_in(epoch), per_epoch)):
            batches, epoch = batches - n, epoch + 1
        return epoch, batches

    def state_dict(self) -> dict[str, int]:
        """Where in the data order a run resumed from the checkpoint being written goes on."""
        position = self.position()
        return {} if position is None else {"epoch": position[0], "batch": position[1]}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.resume = dict(state_dict) if "epoch" in state_dict else None

    def train_dataloader(self) -> DataLoader:
        workers = self.config.data.num_workers
        tokens = self.config.train.batch_tokens
        batch_size = self.config.train.batch_size
        if tokens is not None:
            lengths = item_lengths(self.train_set, getattr(self.train_set, "where", "the train split"))
            self.sampler = LengthBatches(lengths, tokens, batch_size, seed=self.config.seed)
            self.resume_sampler(1)
            return DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=workers,
                              persistent_workers=workers > 0, collate_fn=Collate(self.bundles, self.latent))
        self.sampler = EpochShuffle(len(self.train_set), self.config.seed)
        self.resume_sampler(batch_size)
        return DataLoader(self.train_set, batch_size=batch_size, sampler=self.sampler,
                          drop_last=len(self.train_set) > batch_size,
                          num_workers=workers, persistent_workers=workers > 0,
                          collate_fn=Collate(self.bundles, self.latent))

    def resume_sampler(self, per_batch: int) -> None:
        """A resumed run's sampler starts at the batch after its checkpoint (``per_batch`` entries a batch)."""
        if self.resume is not None:
            r, self.resume = self.resume, None
            self.sampler.resume_at(r["epoch"], r["batch"] * per_batch)


def latent_names(config: Config, bundles: dict[str, Bundle]) -> list[str]:
    """The modalities whose training batches are cached latents (``data.cache_latents``)."""
    if not config.data.cache_latents:
        return []
    return [n for n, b in bundles.items() if b.autoencoder is not None]


def loader(dataset: Dataset, bundles: dict[str, Bundle], batch_size: int, num_workers: int = 0) -> DataLoader:
    """A plain in-order loader (evaluation, reflow)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=Collate(bundles))
