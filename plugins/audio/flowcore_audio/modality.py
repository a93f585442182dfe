"""The audio modality: samples are mono waveforms ``[T]`` float32 in [-1, 1] at ``sample_rate``.

    samples --collate--> {"wave": [B, T], "lengths": [B]} --MelAutoencoder.encode-->
    {"mel": [B, 1, M, F], "frames": [B]} --MelTokenizer.encode--> Tokens

and back: tokens -> mel -> waveforms of their own lengths, by a trained vocoder (option
``vocoder``) or Griffin-Lim. The flow moves
patches of the normalised log-mel (``space: mel``, the default) or of the latent of a KL-VAE
on it (``space: vae``, flowcore_audio/vae.py: 4x fewer frames and bins, ``latent_channels``). Files of any
rate and channel count are read as mono at ``sample_rate`` (flowcore_audio/codec.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from flowcore.errors import ConfigError, DataError
from flowcore.modality import Metric, Modality
from flowcore_audio.autoencoder import MelAutoencoder
from flowcore_audio.codec import AudioCodec
from flowcore_audio.mel import LogMel
from flowcore_audio.tokenizer import MelTokenizer
from flowcore_audio.vae import DOWN, MelVAE
from flowcore_audio.vocoder import Vocoder, load_vocoder, vocoder_file

#: the ``vocoder`` value (like None) that decodes by Griffin-Lim
GRIFFIN_LIM = "griffin_lim"
#: how far past [-1, 1] a sample may stray (resampling and float round-off)
RANGE_TOLERANCE = 1e-3


class Audio(Modality):
    """Sound. Options (the config's ``modalities.audio`` keys other than the core's, checked by
    :class:`flowcore_audio.options.AudioOptions`):

    sample_rate        Hz of every sample; files at other rates are resampled
    n_fft, hop         STFT size and hop in samples (window = n_fft, Hann)
    n_mels             mel bins M (Slaney filter bank over 0 .. f_max)
    f_max              top of the filter bank in Hz (None = sample_rate / 2)
    patch              [frames, bins] of mel per token (one int for both)
    duration           seconds generation lays out when the config gives no ``size``
    griffin_lim_iters  iterations of the Griffin-Lim inverse
    space              "mel" (the fixed log-mel) or "vae" (a KL-VAE's latent; train it with ``stage: autoencoder``)
    latent_channels, vae_width, kl_weight   the VAE's (space: vae)
    classifier         "spoken_digits": the plugin's digit classifier scores samples (``classify``,
                       ``classifier_fd``); None = no classifier
    vocoder            a trained vocoder (its folder or vocoder.safetensors, flowcore_audio/vocoder.py)
                       for mel -> waveform; None or "griffin_lim" = Griffin-Lim
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop: int = 160, n_mels: int = 64,
                 f_max: float | None = None, patch: int | Sequence[int] = (8, 8), duration: float = 1.0,
                 griffin_lim_iters: int = 64, vocoder: str | None = None, space: str = "mel",
                 latent_channels: int = 8, vae_width: int = 32, kl_weight: float = 1e-4,
                 classifier: str | None = None):
        pf, pb = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
        if classifier is not None and sample_rate != 16000:
            raise ConfigError(f"modalities.audio.classifier: the spoken-digit classifier hears 16 kHz audio; "
                              f"sample_rate is {sample_rate}")
        self.sample_rate = sample_rate
        self.classifier_name = classifier
        self.mel_options = dict(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels, f_max=f_max,
                                griffin_lim_iters=griffin_lim_iters)
        self.patch = (pf, pb)
        self.codec = AudioCodec(sample_rate)
        self.vocoder_path = None if vocoder in (None, GRIFFIN_LIM) else vocoder
        if self.vocoder_path is not None and not vocoder_file(self.vocoder_path).is_file():
            raise ConfigError(f"modalities.audio.vocoder: {vocoder_file(self.vocoder_path)} does not exist; train "
                              f"one with `flowcore audio-vocoder {self.vocoder_path}` or set {GRIFFIN_LIM}")
        self.space = space
        self.vae_options = dict(latent_channels=latent_channels, width=vae_width, kl_weight=kl_weight)
        if space == "vae":
            self._tokenizer = MelTokenizer(n_mels // DOWN, (pf, pb), sample_rate, hop, duration,
                                           latent_channels=latent_channels, downsample=DOWN, fill=0.0)
        else:
            self._tokenizer = MelTokenizer(n_mels, (pf, pb), sample_rate, hop, duration)

    @property
    def tokenizer(self) -> MelTokenizer:
        return self._tokenizer

    def log_mel(self) -> LogMel:
        """A fresh transform with this modality's options (CPU; move it with ``.to``)."""
        return LogMel(**self.mel_options)

    def vocoder(self) -> Vocoder | None:
        """The configured trained vocoder (loaded now), or None for Griffin-Lim."""
        return None if self.vocoder_path is None else load_vocoder(self.vocoder_path, self.mel_options)

    def autoencoder(self) -> MelAutoencoder | MelVAE:
        """The fixed waveform <-> mel autoencoder (nothing to train), or with ``space: vae`` a fresh
        KL-VAE on the mel; either decodes by the vocoder or Griffin-Lim."""
        if self.space == "vae":
            return MelVAE(self.log_mel(), self.patch[0], vocoder=self.vocoder(), **self.vae_options)
        return MelAutoencoder(self.log_mel(), self.patch[0], self.vocoder())

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Waveforms -> {"wave": [B, T_max] zero-padded, "lengths": [B] int64}."""
        waves = [torch.as_tensor(s, dtype=torch.float32) for s in samples]
        lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
        batch = torch.zeros(len(waves), int(lengths.max()))
        for i, w in enumerate(waves):
            batch[i, : w.shape[0]] = w
        return {"wave": batch, "lengths": lengths}

    def split(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The inverse of :meth:`collate`: each waveform cut to its own length."""
        return [w[: int(n)] for w, n in zip(batch["wave"], batch["lengths"])]

    def validate(self, sample: Any, where: str) -> torch.Tensor:
        x = torch.as_tensor(sample)
        if x.dim() != 1 or x.numel() == 0:
            raise DataError(f"{where}: an audio sample is a mono waveform [T] with T >= 1, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise DataError(f"{where}: audio samples are floats in [-1, 1], got {x.dtype}")
        if not torch.isfinite(x).all():
            raise DataError(f"{where}: the waveform holds NaN or infinite values")
        peak = float(x.abs().max())
        if peak > 1 + RANGE_TOLERANCE:
            raise DataError(f"{where}: the waveform peaks at {peak:.4g}, outside [-1, 1]; scale it down")
        return x

    def metrics(self) -> dict[str, Metric]:
        """Paired reconstruction distances (flowcore_audio.metrics): ``lsd``, ``mel_l1`` and
        ``chroma_similarity``; real and generated lists pair up by index."""
        from flowcore_audio.metrics import audio_metrics

        options = self.mel_options
        return audio_metrics(options["sample_rate"], options["n_fft"], options["hop"], options["n_mels"],
                             classifier=self.classifier)

    @functools.cached_property
    def classifier(self):
        """The spoken-digit classifier (trained and cached on first use), or None without ``classifier``."""
        if self.classifier_name is None:
            return None
        from flowcore_audio.classifier import load_classifier

        return load_classifier()

    def classify(self, samples: Sequence[torch.Tensor]) -> list[int] | None:
        """The spoken digit the classifier hears in each clip; None without ``classifier``."""
        if self.classifier is None:
            return None
        from flowcore_audio.metrics import as_waves

        return self.classifier.predict(as_waves(samples)).tolist()

    def preview(self, samples: Sequence[torch.Tensor], path: Path, count: int = 8) -> Path:
        """A PNG of the first ``count`` samples' log-mel spectrograms, one panel per row (low bins at the bottom)."""
        from PIL import Image

        from flowcore.io import atomic_path

        mel = self.log_mel()
        with torch.no_grad():
            panels = [mel(torch.as_tensor(s, dtype=torch.float32).cpu()) for s in list(samples)[:count]]
        path = Path(path).with_suffix(".png")
        with atomic_path(path) as tmp:
            Image.fromarray(spectrogram_image(panels)).save(tmp, format="PNG")
        return path


#: colour stops of the spectrogram image, from silence (-1) to loud (+1): black, purple, orange, pale yellow
STOPS = np.array([[0, 0, 4], [120, 28, 109], [237, 105, 37], [252, 255, 164]], dtype=np.float32)


def spectrogram_image(panels: Sequence[torch.Tensor], scale: int = 2, gutter: int = 4) -> np.ndarray:
    """Normalised log-mels [M, F_i] -> one RGB image [H, W, 3] uint8, a panel per row, low bins at the bottom.

    Each mel pixel becomes ``scale`` x ``scale`` pixels; panels are separated by white gutters.
    """
    if not panels:
        raise DataError("audio preview: no samples given")
    width = max(p.shape[1] for p in panels) * scale
    rows = []
    for p in panels:
        level = ((p.clamp(-1, 1).flip(0).numpy() + 1) / 2) * (len(STOPS) - 1)  # [M, F] in [0, stops - 1]
        rgb = np.stack([np.interp(level, np.arange(len(STOPS)), STOPS[:, c]) for c in range(3)], -1)
        rgb = rgb.repeat(scale, 0).repeat(scale, 1)
        canvas = np.full((rgb.shape[0], width, 3), 255.0, dtype=np.float32)
        canvas[:, : rgb.shape[1]] = rgb
        rows += [canvas, np.full((gutter, width, 3), 255.0, dtype=np.float32)]
    return np.concatenate(rows[:-1]).round().astype(np.uint8)
