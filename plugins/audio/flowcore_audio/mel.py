"""Log-mel spectrograms and their network-free inverse (Griffin-Lim).

    wave [..., T]  --LogMel-->  mel [..., M, F]  (normalised log magnitude, roughly [-1, 1])
    mel  [..., M, F]  --LogMel.inverse-->  wave [..., (F - 1) hop]

The forward transform is FluxMusic's (AudioLDM's, HiFi-GAN's): a centred STFT (Hann window of
``n_fft``, hop ``hop``), magnitude (power 1), a Slaney mel filter bank over 0 .. ``f_max`` Hz,
then ``log(clamp(mel, 1e-5))``. The fixed affine :func:`normalise` maps that log range,
log(1e-5) (silence) .. 2.0 (a full-scale sine reaches about 1.84 at the defaults), onto
[-1, 1]; silence is exactly -1. Frames are ``T // hop + 1``; the STFT pads with zeros (not by
reflection), so a waveform's frames are the same alone and zero-padded in a batch.

The inverse undoes the normalisation and the log, finds the linear magnitude by least squares
(``InverseMelScale``) and the phase by ``griffin_lim_iters`` Griffin-Lim iterations, started
from zero phase so that it is deterministic. It is the fallback that needs no training.
Everything runs on the device of the module (move it with ``.to``), in float32 even under
autocast (a bf16 filter bank would blur the quiet bins that the log magnifies).
"""

from __future__ import annotations

import math

import torch
import torchaudio.transforms as T
from torch import nn

#: log of the magnitude floor: silence
LOG_FLOOR = math.log(1e-5)
#: log magnitude mapped to +1 (a full-scale sine peaks near 1.84 at the defaults)
LOG_CEIL = 2.0
#: the normalised value of silence, and of padding
SILENCE = -1.0


def normalise(log_mel: torch.Tensor) -> torch.Tensor:
    """log magnitude in [LOG_FLOOR, LOG_CEIL] -> [-1, 1] (affine, fixed)."""
    return (log_mel - LOG_FLOOR) * (2.0 / (LOG_CEIL - LOG_FLOOR)) - 1.0


def denormalise(mel: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalise`."""
    return (mel + 1.0) * ((LOG_CEIL - LOG_FLOOR) / 2.0) + LOG_FLOOR


class LogMel(nn.Module):
    """Normalised log-mel spectrogram of a waveform, and Griffin-Lim back.

    sample_rate, n_fft, hop, n_mels:  the STFT and the filter bank (defaults: FluxMusic's)
    f_max:              top of the filter bank in Hz (None = sample_rate / 2)
    griffin_lim_iters:  iterations of the inverse
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop: int = 160, n_mels: int = 64,
                 f_max: float | None = None, griffin_lim_iters: int = 64):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        f_max = float(f_max or sample_rate / 2)
        self.mel = T.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop, f_min=0.0, f_max=f_max,
                                    n_mels=n_mels, power=1.0, norm="slaney", mel_scale="slaney",
                                    center=True, pad_mode="constant")
        self.inverse_mel = T.InverseMelScale(n_fft // 2 + 1, n_mels, sample_rate, f_min=0.0, f_max=f_max,
                                             norm="slaney", mel_scale="slaney")
        self.griffin_lim = T.GriffinLim(n_fft, n_iter=griffin_lim_iters, hop_length=hop, power=1.0,
                                        rand_init=False)

    def frames(self, samples: int) -> int:
        """Frames of a waveform of ``samples`` samples."""
        return samples // self.hop + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [..., T] -> normalised log-mel [..., n_mels, T // hop + 1]."""
        with torch.autocast(wave.device.type, enabled=False):
            magnitude = self.mel(wave.float())
        return normalise(magnitude.clamp_min(1e-5).log())

    @torch.no_grad()
    def inverse(self, mel: torch.Tensor) -> torch.Tensor:
        """normalised log-mel [..., n_mels, F] -> wave [..., (F - 1) hop] by Griffin-Lim."""
        with torch.autocast(mel.device.type, enabled=False):
            magnitude = denormalise(mel.float()).exp()
            return self.griffin_lim(self.inverse_mel(magnitude))
