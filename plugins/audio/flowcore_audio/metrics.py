"""Audio metrics computed without any downloaded network. Waveforms are mono ``[T]`` at one rate.

Paired (a reconstruction against its original: VAE, vocoder, Griffin-Lim; pairs are cut
to the shorter of the two):

- ``lsd``: log-spectral distance, the mean over pairs of
  ``mean_frames sqrt(mean_bins (log10 P_a - log10 P_b)^2)`` with ``P = |STFT|^2 + 1e-8``
  (Hann window, n_fft 2048, hop 512), as in audio super-resolution papers (NU-Wave, AudioSR).
- ``mel_l1``: mean ``|log M_a - log M_b|`` with ``M = max(mel magnitude, 1e-5)``, the mel
  of the representation (:class:`flowcore_audio.mel.LogMel`; by default 16 kHz, n_fft 1024,
  hop 160, 64 Slaney mels on 0-8 kHz: FluxMusic's), as HiFi-GAN's and Vocos's mel loss.
- ``chroma_similarity``: mean cosine similarity of the pairs' time-averaged CQT chroma
  (librosa ``chroma_cqt``); higher is better.

Against a condition (generated clips and what each was asked for):

- ``pitch_accuracy``: the fraction of clips whose pitch, the median of librosa ``pyin``'s
  f0 over voiced frames (C2..C7), lies within 50 cents of the requested MIDI pitch (for
  ``notes``: ``low`` + the pitch label); a clip with no voiced frame is a miss, and so is
  an octave error.
- ``key_agreement``: the fraction of clips whose key, estimated from their chroma by the
  Krumhansl-Schmuckler method with the Krumhansl-Kessler (1982) probe-tone profiles
  (:data:`MAJOR_PROFILE`, :data:`MINOR_PROFILE`; the key whose rotated profile correlates
  best), equals the requested key (index into ``flowcore_audio.data.KEYS``).
  ``key_score`` gives MIREX's partial credit instead: 1 same key, 0.5 a fifth away in the
  same mode, 0.3 relative, 0.2 parallel major/minor.

Spoken digits (the metric classifier of :mod:`flowcore_audio.classifier`, trained here):

- ``digit_accuracy``: the fraction of generated clips the classifier hears as the digit
  they were generated for.
- ``classifier_fd``: :func:`flowcore.metrics.frechet_distance` between Gaussians fitted to the
  classifier's 128 features of the two sets (FAD, with this network in place of VGGish).
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import numpy as np
import torch

from flowcore.errors import DataError
from flowcore.metrics import frechet_distance
from flowcore.modality import Metric

SAMPLE_RATE = 16000
#: Krumhansl & Kessler (1982) probe-tone ratings, tonic first
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: pyin's search range: C2..C7
PITCH_RANGE = (36, 96)


def as_waves(waves: Sequence | torch.Tensor | np.ndarray, what: str = "audio metric") -> list[torch.Tensor]:
    """A list of ``[T]`` or an ``[N, T]`` tensor/array -> a list of float32 ``[T]`` tensors."""
    if isinstance(waves, (torch.Tensor, np.ndarray)):
        batch = torch.as_tensor(waves)
        if batch.dim() == 1:
            raise DataError(f"{what}: give a list of waveforms [T] or a batch [N, T], not one waveform")
        waves = list(batch)
    out = [torch.as_tensor(w).float().reshape(-1) for w in waves]
    if not out:
        raise DataError(f"{what}: no waveforms given")
    return out


def _pairs(real, generated, what: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    a, b = as_waves(real, what), as_waves(generated, what)
    if len(a) != len(b):
        raise DataError(f"{what} compares pairs: got {len(a)} real and {len(b)} generated waveforms")
    return [(x[: min(len(x), len(y))], y[: min(len(x), len(y))]) for x, y in zip(a, b)]


def lsd(real, generated, n_fft: int = 2048, hop: int = 512, eps: float = 1e-8) -> float:
    """Log-spectral distance of paired waveforms (0 for identical ones; see the module docstring)."""
    total = 0.0
    pairs = _pairs(real, generated, "lsd")
    window = torch.hann_window(n_fft)
    for x, y in pairs:
        if len(x) < n_fft // 2 + 1:  # too short to reflect-pad: pad with silence
            x, y = (torch.nn.functional.pad(v, (0, n_fft // 2 + 1 - len(v))) for v in (x, y))
        spec = torch.stft(torch.stack([x, y]), n_fft, hop, window=window, return_complex=True)
        logs = torch.log10(spec.abs().pow(2) + eps)
        total += float((logs[0] - logs[1]).pow(2).mean(0).sqrt().mean())
    return total / len(pairs)


@functools.lru_cache(maxsize=8)
def _log_mel(sample_rate: int, n_fft: int, hop: int, n_mels: int):
    from flowcore_audio.mel import LogMel

    return LogMel(sample_rate, n_fft, hop, n_mels)


def log_mel(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop: int = 160,
            n_mels: int = 64) -> torch.Tensor:
    """``wave [..., T]`` -> ``log(max(mel magnitude, 1e-5)) [..., n_mels, frames]``: the
    representation's mel (:class:`flowcore_audio.mel.LogMel`) before its normalisation."""
    from flowcore_audio.mel import denormalise

    with torch.no_grad():
        return denormalise(_log_mel(sample_rate, n_fft, hop, n_mels)(wave.float()))


def mel_l1(real, generated, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop: int = 160,
           n_mels: int = 64) -> float:
    """Mean absolute log-mel difference of paired waveforms, averaged over pairs."""
    pairs = _pairs(real, generated, "mel_l1")
    total = 0.0
    for x, y in pairs:
        mel = log_mel(torch.stack([x, y]), sample_rate, n_fft, hop, n_mels)
        total += float((mel[0] - mel[1]).abs().mean())
    return total / len(pairs)


# ----------------------------------------------------------------------------- pitch


def estimate_pitch(wave, sample_rate: int = SAMPLE_RATE) -> float:
    """The clip's pitch as a (fractional) MIDI number: median pyin f0 over voiced frames; nan if none."""
    import librosa

    y = torch.as_tensor(wave).float().reshape(-1).numpy()
    f0, voiced, _ = librosa.pyin(y, fmin=float(librosa.midi_to_hz(PITCH_RANGE[0])),
                                 fmax=float(librosa.midi_to_hz(PITCH_RANGE[1])), sr=sample_rate,
                                 frame_length=2048)
    f0 = f0[voiced & np.isfinite(f0)]
    return float(librosa.hz_to_midi(np.median(f0))) if len(f0) else float("nan")


def pitch_accuracy(generated, pitches: Sequence[int], sample_rate: int = SAMPLE_RATE, cents: float = 50.0) -> float:
    """Fraction of clips whose estimated pitch is within ``cents`` of the requested MIDI pitch."""
    waves = as_waves(generated, "pitch_accuracy")
    if len(waves) != len(pitches):
        raise DataError(f"pitch_accuracy: {len(waves)} clips but {len(pitches)} pitches")
    found = np.array([estimate_pitch(w, sample_rate) for w in waves])
    hit = np.abs(found - np.asarray(pitches, dtype=np.float64)) * 100.0 <= cents  # nan compares False: a miss
    return float(hit.mean())


# ----------------------------------------------------------------------------- chroma and key


def chroma(wave, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Time-averaged CQT chroma ``[12]`` (C first), summing to 1 (zeros for silence)."""
    import librosa

    y = torch.as_tensor(wave).float().reshape(-1).numpy()
    with warnings.catch_warnings():
        # the lowest octaves of a short clip are computed on a few downsampled samples; librosa warns, rightly
        # but uselessly here, that its FFT is longer than they are
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        c = librosa.feature.chroma_cqt(y=y, sr=sample_rate, hop_length=512).mean(1)
    total = c.sum()
    return c / total if total > 0 else c


def _key_profiles() -> np.ndarray:
    """The 24 key profiles ``[24, 12]``: rows 0-11 major on C..B, 12-23 minor on C..B."""
    return np.stack([np.roll(p, k) for p in (MAJOR_PROFILE, MINOR_PROFILE) for k in range(12)])


def estimate_key_profile(profile: np.ndarray) -> int:
    """The key (0-11 major on C..B, 12-23 minor) whose Krumhansl-Kessler profile correlates
    best with a pitch-class profile ``[12]`` (durations or chroma)."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != (12,):
        raise DataError(f"a pitch-class profile has 12 values, got shape {profile.shape}")
    if np.ptp(profile) == 0:
        return 0
    return int(np.argmax([np.corrcoef(profile, p)[0, 1] for p in _key_profiles()]))


def estimate_key(wave, sample_rate: int = SAMPLE_RATE) -> int:
    """The key of a clip from its chroma (index into flowcore_audio.data.KEYS)."""
    return estimate_key_profile(chroma(wave, sample_rate))


def key_relation_score(found: int, wanted: int) -> float:
    """MIREX key score: 1 same, 0.5 a fifth up or down in the same mode, 0.3 relative, 0.2 parallel, else 0."""
    if found == wanted:
        return 1.0
    (mode_f, tonic_f), (mode_w, tonic_w) = divmod(found, 12), divmod(wanted, 12)
    if mode_f == mode_w and (tonic_f - tonic_w) % 12 in (5, 7):
        return 0.5
    # the relative minor of a major key lies three semitones below its tonic
    relative = (tonic_w - 3) % 12 if mode_w == 0 else (tonic_w + 3) % 12
    if mode_f != mode_w and tonic_f == relative:
        return 0.3
    if mode_f != mode_w and tonic_f == tonic_w:
        return 0.2
    return 0.0


def _keys_found(generated, keys: Sequence[int], sample_rate: int, what: str) -> list[int]:
    waves = as_waves(generated, what)
    if len(waves) != len(keys):
        raise DataError(f"{what}: {len(waves)} clips but {len(keys)} keys")
    return [estimate_key(w, sample_rate) for w in waves]


def key_agreement(generated, keys: Sequence[int], sample_rate: int = SAMPLE_RATE) -> float:
    """Fraction of clips whose estimated key is the requested one."""
    found = _keys_found(generated, keys, sample_rate, "key_agreement")
    return float(np.mean([f == int(k) for f, k in zip(found, keys)]))


def key_score(generated, keys: Sequence[int], sample_rate: int = SAMPLE_RATE) -> float:
    """Mean MIREX key score (:func:`key_relation_score`) of the clips against the requested keys."""
    found = _keys_found(generated, keys, sample_rate, "key_score")
    return float(np.mean([key_relation_score(f, int(k)) for f, k in zip(found, keys)]))


def chroma_similarity(real, generated, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean cosine similarity of paired clips' time-averaged chroma (1 = same pitch-class balance)."""
    pairs = _pairs(real, generated, "chroma_similarity")
    total = 0.0
    for x, y in pairs:
        a, b = chroma(x, sample_rate), chroma(y, sample_rate)
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        total += float(a @ b / norm) if norm > 0 else float(np.linalg.norm(a) == np.linalg.norm(b))
    return total / len(pairs)


# ----------------------------------------------------------------------------- classifier metrics


def classifier_fd(classifier, real, generated) -> float:
    """Fréchet distance of the spoken-digit classifier's features of two sets of clips (FAD-style)."""
    return frechet_distance(classifier.features(as_waves(real)), classifier.features(as_waves(generated)))


def digit_accuracy(classifier, generated, labels: Sequence[int]) -> float:
    """Fraction of generated clips the classifier assigns the digit they were generated for."""
    labels = torch.as_tensor(list(labels)).long()
    pred = classifier.predict(as_waves(generated))
    if pred.shape != labels.shape:
        raise DataError(f"digit_accuracy: {len(pred)} clips but {len(labels)} labels")
    return float((pred == labels).float().mean())


def audio_metrics(sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop: int = 160, n_mels: int = 64,
                  classifier=None) -> dict[str, Metric]:
    """The real-vs-generated metrics a modality offers (``Modality.metrics()``): the paired
    distances, and with a spoken-digit ``classifier`` its Fréchet distance."""
    found = {
        "lsd": Metric("lsd", lsd, True, "log-spectral distance of paired clips (log10 power, n_fft 2048, hop 512)"),
        "mel_l1": Metric("mel_l1", functools.partial(mel_l1, sample_rate=sample_rate, n_fft=n_fft, hop=hop,
                                                     n_mels=n_mels),
                         True, "mean |log-mel difference| of paired clips"),
        "chroma_similarity": Metric("chroma_similarity", functools.partial(chroma_similarity, sample_rate=sample_rate),
                                    False, "mean cosine similarity of paired clips' time-averaged chroma"),
    }
    if classifier is not None:
        found["classifier_fd"] = Metric("classifier_fd", functools.partial(classifier_fd, classifier), True,
                                        "Fréchet distance of the spoken-digit classifier's 128 features (FAD-style)")
    return found
