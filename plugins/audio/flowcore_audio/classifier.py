"""The spoken-digit metric network: a small CNN on log-mel features, trained here, never downloaded.

    waveform [N, T] at 16 kHz --centred in 1 s, log-mel [N, 40, 51]--> SmallAudioCNN.features
    --> [N, 128] --head--> logits [N, 10]

It gives the accuracy of digit-conditional samples (does the classifier hear the digit that was
asked for?) and the feature space of the Fréchet distance (FAD with this network in place of
VGGish). It is trained on the train voices of ``spoken_digits`` and its accuracy is measured on
the test voices, speakers it never heard (0.975 of their 280 clips with the default recipe,
about 5 s of training on one core). Weights are cached in
``<cache>/audio/spoken_digits-classifier-<key>.safetensors`` with that accuracy in the file's
metadata (``<cache>`` is :func:`flowcore.files.cache_dir`); ``<key>`` hashes :data:`VERSION`,
the :class:`Recipe` (data options included) and the data's version, so a changed network,
recipe or data set never reuses stale weights.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from flowcore.cache import cached_network
from flowcore.errors import DataError
from flowcore.files import cache_dir

#: bump when the network's code, its features or the training loop change
VERSION = "1"
FEATURES = 128
SAMPLE_RATE = 16000
#: the classifier hears one second, the clip centred in it
CLIP_SECONDS = 1.0


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained: well under half a minute on 2 CPU cores."""

    width: int = 64          # channels of the first conv; 1.5x and 2x in the next two
    epochs: int = 12
    batch_size: int = 64
    lr: float = 6e-3         # AdamW peak of a one-cycle schedule
    n_mels: int = 40
    hop: int = 320           # 20 ms frames
    shift: float = 0.1       # random time shifts up to this many seconds
    bands: int = 3           # random shifts up to this many mel bands
    noise_snr: float = 15.0  # half the batch gets white noise at this SNR (dB) or higher
    takes: int = 2           # spoken_digits takes per voice
    seed: int = 0            # spoken_digits seed (which voices are held out) and training seed

    def key(self) -> str:
        """8 hex digits of VERSION, the data's version and this recipe: part of the cache file's name."""
        from flowcore_audio.data import VERSION as DATA_VERSION

        text = json.dumps({"version": VERSION, "data": DATA_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


@functools.lru_cache(maxsize=4)
def _mel(n_mels: int, hop: int):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, win_length=400, hop_length=hop,
                                                n_mels=n_mels, f_min=20.0, f_max=SAMPLE_RATE / 2)


def mel_power(waves: torch.Tensor, n_mels: int = 40, hop: int = 320) -> torch.Tensor:
    """``waves [N, T]`` -> mel power ``[N, n_mels, frames]``."""
    return _mel(n_mels, hop)(waves.float())


def normalise(power: torch.Tensor) -> torch.Tensor:
    """Mel power ``[N, M, F]`` -> dB below each clip's loudest bin, floored at -80 dB, scaled to
    about [-1, 1], so that loudness does not matter."""
    db = 10 * torch.log10(power + 1e-10)
    db = (db - db.amax(dim=(-2, -1), keepdim=True)).clamp_min(-80.0)
    return db / 40.0 + 1.0


class SmallAudioCNN(nn.Module):
    """Convolutions over time with the mel bands as channels (keyword-spotting style):
    3 x (conv1d k5 - BN - ReLU) with w, 1.5w, 2w channels (the last two stride 2),
    avg-pool to 3 steps, linear -> 128 -> K."""

    def __init__(self, n_mels: int = 40, num_classes: int = 10, width: int = 64):
        super().__init__()
        w = width

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            return [nn.Conv1d(i, o, 5, stride=stride, padding=2, bias=False), nn.BatchNorm1d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(n_mels, w, 1), *block(w, 3 * w // 2, 2), *block(3 * w // 2, 2 * w, 2),
            nn.AdaptiveAvgPool1d(3), nn.Flatten(),
            nn.Linear(2 * w * 3, FEATURES), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """normalised log-mel [N, M, frames] -> [N, 128]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _fit(waves, length: int) -> torch.Tensor:
    """A list of [T] or [N, T] -> [N, length] float32, each clip centred (padded or cut)."""
    if isinstance(waves, torch.Tensor) and waves.dim() != 2:
        raise DataError(f"the digit classifier takes waveforms [N, T] or a list of [T], got {tuple(waves.shape)}")
    rows = list(waves)
    out = torch.zeros(len(rows), length)
    for i, w in enumerate(rows):
        w = torch.as_tensor(w).float().reshape(-1)
        if len(w) > length:
            start = (len(w) - length) // 2
            out[i] = w[start: start + length]
        else:
            start = (length - len(w)) // 2
            out[i, start: start + len(w)] = w
    return out


def _split_waves(split: str, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    from flowcore_audio.data import spoken_digits

    ds = spoken_digits(split=split, takes=recipe.takes, duration=CLIP_SECONDS, sample_rate=SAMPLE_RATE,
                       seed=recipe.seed)
    waves = torch.from_numpy(ds.pcm.astype("float32") / 32768.0)
    return waves, torch.from_numpy(ds.labels)


def _shifted(x: torch.Tensor, shifts: torch.Tensor, dim: int) -> torch.Tensor:
    """Each clip of ``x [N, M, F]`` moved by ``shifts [N]`` steps along ``dim`` (1 or 2); zeros fill in."""
    size = x.shape[dim]
    steps = torch.arange(size).view((1, size, 1) if dim == 1 else (1, 1, size))
    idx = steps - shifts.view(-1, 1, 1)
    inside = (idx >= 0) & (idx < size)
    return torch.where(inside, x.gather(dim, idx.clamp(0, size - 1).expand_as(x)), torch.zeros(()))


def _augment(power: torch.Tensor, recipe: Recipe, g: torch.Generator) -> torch.Tensor:
    """Move each clip in time (whole frames) and in frequency (whole mel bands: another voice's
    formants sit higher or lower), and raise a flat noise floor under half of them, ``noise_snr``
    to ``noise_snr + 25`` dB below the clip's mean power."""
    n = len(power)
    frames = int(recipe.shift * SAMPLE_RATE / recipe.hop)
    power = _shifted(power, torch.randint(-frames, frames + 1, (n,), generator=g), dim=2)
    power = _shifted(power, torch.randint(-recipe.bands, recipe.bands + 1, (n,), generator=g), dim=1)
    snr = recipe.noise_snr + 25 * torch.rand(n, 1, 1, generator=g)
    floor = power.mean(dim=(1, 2), keepdim=True) / 10 ** (snr / 10)
    return power + floor * (torch.rand(n, 1, 1, generator=g) < 0.5)


@contextlib.contextmanager
def _one_thread():
    # convolutions this small gain nothing from a second thread, and lose ten times over
    # when other processes share the cores (the threads spin waiting for each other)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_classifier(recipe: Recipe = Recipe()) -> SmallAudioCNN:
    """Train a SmallAudioCNN on the train voices of spoken_digits (AdamW, one-cycle lr, time and band shifts, noise)."""
    waves, y = _split_waves("train", recipe)
    g = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model = SmallAudioCNN(recipe.n_mels, 10, recipe.width)
    bs = recipe.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    steps = recipe.epochs * ((len(y) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    model.train()
    with _one_thread():
        power = mel_power(waves, recipe.n_mels, recipe.hop)
        for _ in range(recipe.epochs):
            order = torch.randperm(len(y), generator=g)
            for start in range(0, len(y), bs):
                idx = order[start: start + bs]
                loss = F.cross_entropy(model(normalise(_augment(power[idx], recipe, g))), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return model.eval()


@dataclass
class TrainedClassifier:
    """A trained SmallAudioCNN and what it scored on the held-out voices."""

    model: SmallAudioCNN
    recipe: Recipe
    test_accuracy: float
    test_count: int
    path: Path | None

    @torch.no_grad()
    def _apply(self, fn, waves, batch_size: int = 256) -> torch.Tensor:
        x = _fit(waves, int(CLIP_SECONDS * SAMPLE_RATE))
        self.model.eval()
        r = self.recipe
        with _one_thread():
            return torch.cat([fn(normalise(mel_power(x[i: i + batch_size], r.n_mels, r.hop)))
                              for i in range(0, len(x), batch_size)])

    def features(self, waves) -> torch.Tensor:
        """16 kHz waveforms (list of [T] or [N, T]) -> [N, 128] float32."""
        return self._apply(self.model.features, waves)

    def predict(self, waves) -> torch.Tensor:
        """16 kHz waveforms -> predicted digits [N]."""
        return self._apply(self.model, waves).argmax(-1)


_loaded: dict[str, TrainedClassifier] = {}


def load_classifier(recipe: Recipe = Recipe(), retrain: bool = False) -> TrainedClassifier:
    """The cached spoken-digit classifier, trained now (and cached) if missing or outdated."""
    path = cache_dir("audio") / f"spoken_digits-classifier-{recipe.key()}.safetensors"
    key = str(path)
    if not retrain and key in _loaded:
        return _loaded[key]
    trained: list[TrainedClassifier] = []  # one trained now keeps its accuracy unrounded

    def train() -> tuple[nn.Module, dict[str, str]]:
        clf, meta = _train_and_test(recipe, path)
        trained.append(clf)
        return clf.model, meta

    model, meta = cached_network(path, recipe.key(), lambda meta: SmallAudioCNN(recipe.n_mels, 10, recipe.width),
                                 train, retrain)
    clf = trained[0] if trained else TrainedClassifier(model, recipe, float(meta["test_accuracy"]),
                                                       int(meta["test_count"]), path)
    _loaded[key] = clf
    return clf


def _train_and_test(recipe: Recipe, path: Path) -> tuple[TrainedClassifier, dict[str, str]]:
    """A classifier trained now, scored on the test voices, and the metadata its file keeps."""
    model = train_classifier(recipe)
    x_test, y_test = _split_waves("test", recipe)
    clf = TrainedClassifier(model, recipe, 0.0, len(y_test), path)
    clf.test_accuracy = float((clf.predict(x_test) == y_test).float().mean())
    return clf, {"version": VERSION, "recipe": json.dumps(asdict(recipe)),
                 "test_accuracy": f"{clf.test_accuracy:.6f}", "test_count": str(len(y_test))}
