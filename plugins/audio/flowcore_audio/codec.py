"""Sound files <-> samples: mono float32 waveforms ``[T]`` in [-1, 1] at the codec's sample rate.

Reading goes through soundfile (libsndfile): WAV, FLAC and OGG Vorbis always, MP3 where the
installed libsndfile has it (1.1 and later; :data:`MP3` says whether this one does). A file
with several channels is averaged to mono; a file at another rate is resampled with
``torchaudio.functional.resample`` (band-limited sinc; soxr for rate pairs whose reduced ratio
would make torchaudio's kernel huge, such as 44101 Hz) and clamped back into [-1, 1].
Samples must lie in [-1, 1] (float files may hold more: those are refused).
Standard MIDI files (.mid, .midi) are read too: checked, then rendered by fluidsynth with the
General MIDI soundfont at the codec's rate (flowcore_audio/midi.py); they cannot be written.
Writing gives 16-bit PCM WAV or FLAC, or OGG Vorbis (lossy), chosen by the suffix, atomically.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from flowcore.errors import DataError
from flowcore.io import atomic_path
from flowcore.modality import Codec
from flowcore_audio.midi import MIDI_SUFFIXES, read_midi

#: suffix -> (libsndfile format, subtype written)
WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
#: whether this libsndfile reads MP3
MP3 = "MP3" in sf.available_formats()
#: a data chunk that claims more bytes than the file holds, as libsndfile reports it
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: data sizes that streaming writers leave in a header they never rewrite
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}
#: the rates a file may have (a damaged header gives others)
RATES = (1000, 768000)
#: torchaudio's sinc kernel has (rate / g) x (target / g) taps (g = gcd); above this, soxr
MAX_KERNEL = 1_000_000


class AudioCodec(Codec):
    """WAV, FLAC, OGG (and MP3 reading where available) via soundfile.

    sample_rate: the rate of every sample read; other files are resampled to it, and writes use it.
    """

    extensions = (".wav", ".flac", ".ogg") + ((".mp3",) if MP3 else ()) + MIDI_SUFFIXES
    read_only_extensions = (".mp3",) + MIDI_SUFFIXES
    #: 16-bit files hold steps of 1/32768, and libsndfile writes with 32767 and reads with 32768.
    #: Vorbis is lossy: chords and notes come back within 0.09 (noise does not: it drops what the
    #: ear misses), so OGG gets 0.1
    round_trip_atol = {".wav": 2.0 / 32768, ".flac": 2.0 / 32768, ".ogg": 0.1}

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate

    def read(self, path: Path) -> torch.Tensor:
        """One file -> ``[T]`` float32 in [-1, 1] at ``sample_rate``; DataError naming the file if unreadable."""
        path = Path(path)
        if path.suffix.lower() in MIDI_SUFFIXES:
            return read_midi(path, self.sample_rate)
        if path.suffix.lower() == ".mp3" and not MP3:
            raise DataError(f"{path}: this libsndfile ({sf.__libsndfile_version__}) cannot read MP3; "
                            "convert the file to WAV or FLAC, or install libsndfile 1.1 or later")
        try:
            with sf.SoundFile(path) as f:
                declared, rate = f.frames, f.samplerate
                truncated = _short_data_chunk(f.extra_info)
                data = f.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read audio ({type(exc).__name__}: {exc}); the file is corrupt, "
                            "truncated or not a sound file - re-export it or remove it from the data") from exc
        if truncated or len(data) < declared:
            raise DataError(f"{path}: truncated audio ({truncated or f'{len(data)} of {declared} frames'}); "
                            "re-export it or remove it from the data")
        if len(data) == 0:
            raise DataError(f"{path}: the file holds no audio frames; remove it from the data")
        if not RATES[0] <= rate <= RATES[1]:
            raise DataError(f"{path}: sample rate {rate} Hz is outside {RATES[0]}..{RATES[1]} Hz; "
                            "the header is damaged or the file is not audio")
        if not np.isfinite(data).all():
            raise DataError(f"{path}: the audio holds NaN or infinite samples; re-export it")
        peak = float(np.abs(data).max())
        if peak > 1.0:
            raise DataError(f"{path}: samples peak at {peak:.4g}, outside [-1, 1]; normalise the file")
        wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32))
        return resample(wave, rate, self.sample_rate)

    def write(self, sample: torch.Tensor, path: Path) -> None:
        """``[T]`` (clamped to [-1, 1]) -> one file at ``sample_rate``, format from the suffix, atomically."""
        path = Path(path)
        fmt, subtype = self._format(path)
        x = torch.as_tensor(sample).detach().float().cpu()
        if x.dim() != 1 or x.numel() == 0:
            raise DataError(f"{path}: an audio sample is a mono waveform [T], got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError(f"{path}: the waveform holds NaN or infinite samples; nothing written")
        with atomic_path(path) as tmp:
            sf.write(tmp, x.clamp(-1, 1).numpy(), self.sample_rate, format=fmt, subtype=subtype)

    @staticmethod
    def _format(path: Path) -> tuple[str, str]:
        # atomic writes hand us ".name.wav.XXXX.wav.tmp": the real suffix is the one before ".tmp"
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".tmp"]
        found = WRITE_FORMATS.get(suffixes[-1] if suffixes else "")
        if found is None:
            raise DataError(f"{path}: cannot write this suffix; use one of {sorted(WRITE_FORMATS)}")
        return found


def resample(wave: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """``wave [..., T]`` at ``rate`` Hz -> at ``target`` Hz, clamped to [-1, 1] (a no-op at the same rate)."""
    if rate == target:
        return wave
    g = math.gcd(rate, target)
    if (rate // g) * (target // g) > MAX_KERNEL:
        import soxr

        out = soxr.resample(wave.numpy(), rate, target, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).clamp(-1, 1)
    import torchaudio.functional as AF

    return AF.resample(wave, rate, target).clamp(-1, 1)


def _short_data_chunk(extra_info: str) -> str:
    """libsndfile's note of a WAV data chunk longer than the file, or "" when there is none."""
    match = _SHORT_DATA.search(extra_info)
    if match is None or int(match.group(1)) in _PLACEHOLDER_SIZES:
        return ""
    return f"the data chunk claims {match.group(1)} bytes, the file holds {match.group(2)}"


def list_audio(root: Path, extensions: tuple[str, ...] = AudioCodec.extensions) -> list[Path]:
    """Every sound file under ``root`` (recursive) that the codec reads, sorted by path."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in extensions)
