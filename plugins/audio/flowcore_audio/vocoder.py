"""A vocoder trained by the plugin: normalised log-mel -> waveform (Vocos: ConvNeXt blocks, an iSTFT head).

    mel [B, M, F] --conv k7--> [B, D, F] --ConvNeXt x N--> LayerNorm --linear--> delta, phase [B, K, F]
    log |S| = log(pinv(filter bank) mel, floored) + delta     (K = head_fft / 2 + 1)
    S = |S| e^(i phase) --iSTFT (Hann, hop)--> wave [B, (F - 1) hop]

Vocos (Siuzdenko et al. 2023) predicts the STFT itself rather than upsampling in time, so the
whole network runs at the frame rate: a few hundred thousand parameters vocode a second of
audio in milliseconds on a CPU. The head's STFT has the representation's hop and its frames
are centred like the mel's (frame f at sample f hop), so F frames give (F - 1) hop samples,
as Griffin-Lim does. The magnitude starts from the least-squares inverse of the mel filter
bank (what Griffin-Lim starts from, rescaled to the head's window), so the network learns a
correction to it and the phase rather than the whole spectrum: silence, which the mel floors at
1e-5, is near silence from the first step. Training (:func:`train_vocoder`) minimises the L1 distance of log-mels
(the representation's) plus a multi-resolution STFT loss (spectral convergence and log
magnitude at several window sizes, Parallel WaveGAN's); there is no adversarial term.

The weights go to ``<dir>/vocoder.safetensors`` (atomically, also during training) with the
recipe and the mel options in the metadata; :func:`load_vocoder` rebuilds the network from
them, and the ``audio`` modality's ``vocoder`` option names that file or its folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowcore.errors import ConfigError, DataError
from flowcore_audio.mel import LogMel, denormalise

#: bump when the network or the file layout changes
VERSION = "2"
FILE = "vocoder.safetensors"
#: (n_fft, hop) of the multi-resolution STFT loss
RESOLUTIONS = ((256, 64), (512, 128), (1024, 256), (2048, 512))
#: the predicted log magnitude is clamped below this before exp (|S| <= e^7, about 1100)
LOG_MAG_MAX = 7.0
#: mel options a vocoder is trained for; they must match the modality's
MEL_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "f_max")


@dataclass(frozen=True)
class VocoderRecipe:
    """The network and how it is trained (defaults: about 25 minutes on 2 CPU cores)."""

    dim: int = 128                    # channels of the ConvNeXt blocks
    blocks: int = 6
    head_fft: int = 640               # STFT size of the head (4 hops at the default hop)
    steps: int = 10000
    minutes: float = 25.0             # training stops after this long even before ``steps``
    batch_size: int = 16
    segment: float = 0.5              # seconds of each training crop
    lr: float = 1e-3                  # AdamW peak; linear warm-up, then cosine decay over steps or minutes
    warmup: int = 200
    datasets: tuple[str, ...] = ("spoken_digits", "notes")
    seed: int = 0
    mel: dict = field(default_factory=lambda: {"sample_rate": 16000, "n_fft": 1024, "hop": 160, "n_mels": 64,
                                               "f_max": None})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class ConvNeXtBlock(nn.Module):
    """x + gamma * pw2(gelu(pw1(norm(dwconv(x))))) on [B, D, F] (ConvNeXt, 1-D as in Vocos)."""

    def __init__(self, dim: int, hidden: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


def istft(log_mag: torch.Tensor, phase: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """log |S|, phase [B, K, F] -> wave [B, length]: inverse centred Hann STFT (size 2 (K - 1), hop ``hop``)."""
    n_fft = 2 * (log_mag.shape[1] - 1)
    spec = torch.polar(log_mag.clamp(max=LOG_MAG_MAX).exp(), phase)
    window = torch.hann_window(n_fft, device=log_mag.device)
    return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)


class Vocoder(nn.Module):
    """Normalised log-mel [B, M, F] -> waveform [B, (F - 1) hop] (see the module docstring).

    n_mels, hop: the representation's; dim, blocks, head_fft: the recipe's
    """

    def __init__(self, n_mels: int = 64, hop: int = 160, dim: int = 128, blocks: int = 6, head_fft: int = 640,
                 sample_rate: int = 16000, n_fft: int = 1024, f_max: float | None = None):
        super().__init__()
        if head_fft % 2 or head_fft < hop:
            raise ConfigError(f"vocoder: head_fft ({head_fft}) must be even and at least the hop ({hop})")
        self.hop, self.bins = hop, head_fft // 2 + 1
        import torchaudio.functional as AF

        bank = AF.melscale_fbanks(self.bins, 0.0, float(f_max or sample_rate / 2), n_mels, sample_rate,
                                  norm="slaney", mel_scale="slaney")  # [K, M]
        # the mel's magnitudes are of an n_fft window; a sinusoid's STFT peak scales with the window's length
        self.register_buffer("inverse_bank", torch.linalg.pinv(bank.T) * (head_fft / n_fft), persistent=False)
        self.embed = nn.Conv1d(n_mels, dim, 7, padding=3)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, 3 * dim, 1.0 / blocks) for _ in range(blocks))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 2 * self.bins)
        self.apply(_init)

    def spectrum(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel [B, M, F] -> log |S|, phase [B, K, F]."""
        x = self.norm_in(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2)
        delta, phase = out.chunk(2, dim=1)
        prior = (self.inverse_bank @ denormalise(mel).exp()).clamp_min(1e-5).log()
        return prior + delta, phase

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        log_mag, phase = self.spectrum(mel.float())
        return istft(log_mag, phase, self.hop, (mel.shape[-1] - 1) * self.hop)


def build_vocoder(mel: dict, recipe: dict) -> Vocoder:
    """A fresh :class:`Vocoder` for the mel options ``mel`` and a recipe's ``dim``, ``blocks`` and ``head_fft``."""
    return Vocoder(mel["n_mels"], mel["hop"], recipe["dim"], recipe["blocks"], recipe["head_fft"], mel["sample_rate"],
                   mel["n_fft"], mel["f_max"])


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- loss


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """wave [B, T] -> |STFT| [B, n_fft/2 + 1, frames] (centred Hann)."""
    window = torch.hann_window(n_fft, device=wave.device)
    return torch.stft(wave, n_fft, hop, window=window, center=True, return_complex=True).abs()


def vocoder_loss(made: torch.Tensor, real: torch.Tensor, mel: LogMel,
                 resolutions: Sequence[tuple[int, int]] = RESOLUTIONS) -> dict[str, torch.Tensor]:
    """Mel L1 (natural log, the representation's mel) + mean over resolutions of spectral
    convergence ``||S' - S||_F / ||S||_F`` and log-magnitude L1; waves [B, T] of one length."""
    mel_l1 = (denormalise(mel(made)) - denormalise(mel(real))).abs().mean()
    sc, mag = made.new_zeros(()), made.new_zeros(())
    for n_fft, hop in resolutions:
        a, b = stft_magnitude(made, n_fft, hop), stft_magnitude(real, n_fft, hop)
        sc = sc + torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-5)
        mag = mag + (a.clamp_min(1e-5).log() - b.clamp_min(1e-5).log()).abs().mean()
    sc, mag = sc / len(resolutions), mag / len(resolutions)
    return {"loss": mel_l1 + sc + mag, "mel_l1": mel_l1.detach(), "sc": sc.detach(), "log_mag": mag.detach()}


# ----------------------------------------------------------------------------- training


def training_clips(recipe: VocoderRecipe) -> torch.Tensor:
    """The train splits of ``recipe.datasets`` as one float32 tensor [N, T] (cut or zero-padded to the
    longest clip)."""
    from flowcore_audio import data

    makers = {"spoken_digits": data.spoken_digits, "notes": data.notes, "chorales": data.chorales,
              "sonic_pi": data.sonic_pi}
    clips: list[np.ndarray] = []
    for name in recipe.datasets:
        if name not in makers:
            raise ConfigError(f"vocoder datasets: unknown {name!r}; choose from {sorted(makers)}")
        clips += list(makers[name]("train", sample_rate=recipe.mel["sample_rate"]).pcm)
    length = max(len(c) for c in clips)
    out = np.zeros((len(clips), length), dtype=np.float32)
    for i, c in enumerate(clips):
        out[i, : len(c)] = c.astype(np.float32) / 32768.0
    return torch.from_numpy(out)


def _batch(clips: torch.Tensor, size: int, samples: int, g: torch.Generator) -> torch.Tensor:
    """``size`` random crops of ``samples`` samples, each at a random gain of -12..0 dB."""
    idx = torch.randint(len(clips), (size,), generator=g)
    starts = torch.randint(clips.shape[1] - samples + 1, (size,), generator=g)
    crops = torch.stack([clips[i, s: s + samples] for i, s in zip(idx.tolist(), starts.tolist())])
    return crops * 10 ** (-12 * torch.rand(size, 1, generator=g) / 20)


def train_vocoder(out_dir: str | Path, recipe: VocoderRecipe = VocoderRecipe(), clips: torch.Tensor | None = None,
                  save_every: int = 500, log: Callable[[str], None] | None = print) -> Path:
    """Train a :class:`Vocoder` on ``clips [N, T]`` (default: :func:`training_clips`), saving
    ``out_dir/vocoder.safetensors`` every ``save_every`` steps and at the end. Returns the file."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    clips = training_clips(recipe) if clips is None else clips
    hop = recipe.mel["hop"]
    samples = min(clips.shape[1], max(hop, round(recipe.segment * recipe.mel["sample_rate"])))
    mel = LogMel(**recipe.mel)
    model = build_vocoder(recipe.mel, asdict(recipe))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.8, 0.99), weight_decay=0.01)

    def rate(step: int, elapsed: float) -> float:
        """Warm-up, then a cosine over whichever runs out first: the steps or the minutes."""
        if step <= recipe.warmup:
            return recipe.lr * step / recipe.warmup
        done = max((step - recipe.warmup) / max(1, recipe.steps - recipe.warmup), elapsed / (recipe.minutes * 60))
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    path = Path(out_dir) / FILE
    start, running = time.time(), None
    for step in range(1, recipe.steps + 1):
        for group in opt.param_groups:
            group["lr"] = rate(step, time.time() - start)
        real = _batch(clips, recipe.batch_size, samples, g)
        with torch.no_grad():
            source = mel(real)
        made = model(source)
        losses = vocoder_loss(made, real[:, : made.shape[1]], mel)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = float(losses["loss"].detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        elapsed = time.time() - start
        out_of_time = elapsed > recipe.minutes * 60
        if log is not None and (step % 100 == 0 or step == 1):
            log(f"vocoder step {step}/{recipe.steps}: loss {running:.4f} (mel L1 {float(losses['mel_l1']):.3f}, "
                f"sc {float(losses['sc']):.3f}), {elapsed / 60:.1f} min")
        if step % save_every == 0 or step == recipe.steps or out_of_time:
            save_vocoder(model, recipe, path, step=step, seconds=elapsed)
        if out_of_time:
            if log is not None:
                log(f"vocoder: stopped at step {step} after {recipe.minutes:g} minutes")
            break
    return path


# ----------------------------------------------------------------------------- files


def save_vocoder(model: Vocoder, recipe: VocoderRecipe, path: Path, step: int = 0, seconds: float = 0.0) -> None:
    """Write the weights and, in the metadata, the recipe, the mel options and how far training got (atomic)."""
    from safetensors.torch import save_file

    from flowcore.io import atomic_path

    meta = {"version": VERSION, "recipe": recipe.to_json(), "mel": json.dumps(recipe.mel, sort_keys=True),
            "steps": str(step), "train_seconds": f"{seconds:.1f}"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


def vocoder_file(where: str | Path) -> Path:
    """A vocoder's file: ``where`` itself, or ``where/vocoder.safetensors`` for a folder."""
    path = Path(where).expanduser()
    return path / FILE if path.is_dir() else path


def load_vocoder(where: str | Path, mel_options: dict | None = None) -> Vocoder:
    """The vocoder saved at ``where`` (a file or its folder), in eval mode.

    ``mel_options``: the modality's mel (sample_rate, n_fft, hop, n_mels, f_max); a vocoder
    trained for another mel is refused with a ConfigError that names both.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = vocoder_file(where)
    if not path.is_file():
        raise ConfigError(f"vocoder {where}: no {FILE} there (train one: flowcore audio-vocoder {where})")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        recipe = json.loads(meta["recipe"])
        state = load_file(str(path))
    except Exception as err:  # a truncated or foreign file: one clear error
        raise DataError(f"{path}: not a flowcore-audio vocoder file ({type(err).__name__}: {err})") from err
    if meta.get("version") != VERSION:
        raise ConfigError(f"{path}: vocoder file version {meta.get('version')!r}, this plugin reads {VERSION!r}; "
                          "train it again")
    mel = recipe["mel"]
    if mel_options is not None:
        wanted = {k: mel_options.get(k) for k in MEL_KEYS}
        if {k: mel.get(k) for k in MEL_KEYS} != wanted:
            raise ConfigError(f"{path}: the vocoder was trained for the mel {mel}, the modality has {wanted}")
    model = build_vocoder(mel, recipe)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{path}: the weights do not fit the recipe in its metadata ({err})") from err
    return model.eval().requires_grad_(False)
