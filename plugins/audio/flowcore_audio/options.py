"""Options of the audio modality: a pydantic model, no torch.

The entry point (flowcore_audio/plugin.py) declares it on the modality's spec, so a config is
checked against it before torch or this plugin's heavy modules are imported. The defaults are
those of :class:`flowcore_audio.modality.Audio` (FluxMusic's mel: 16 kHz, n_fft 1024, hop 160,
64 mels).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from flowcore.schema import Number, Options

Length = Annotated[int, Field(ge=1)]
#: a patch: one int for square, or [frames, bins]
PatchSize = Length | Annotated[list[Length], Field(min_length=2, max_length=2)]


class AudioOptions(Options):
    """``modalities.audio`` (see :class:`flowcore_audio.modality.Audio` for what each does)."""

    sample_rate: int = Field(16000, ge=1000)
    n_fft: int = Field(1024, ge=16)
    hop: int = Field(160, ge=1)
    n_mels: int = Field(64, ge=1)
    #: top of the mel filter bank in Hz; null = sample_rate / 2
    f_max: Number | None = Field(None, gt=0)
    #: mel pixels per token: [frames, bins] (or one int for both)
    patch: PatchSize = [8, 8]
    #: seconds of audio that generation lays out when the config gives no size
    duration: Number = Field(1.0, gt=0)
    griffin_lim_iters: int = Field(64, ge=1)
    #: run directory of a trained vocoder; null = Griffin-Lim (no vocoder is built yet)
    vocoder: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> AudioOptions:
        bins = self.patch if isinstance(self.patch, int) else self.patch[1]
        if self.n_mels % bins:
            raise ValueError(f"n_mels ({self.n_mels}) must be a multiple of the patch's bins ({bins})")
        if self.hop > self.n_fft:
            raise ValueError(f"hop ({self.hop}) must not exceed n_fft ({self.n_fft})")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max ({self.f_max}) must not exceed sample_rate / 2 ({self.sample_rate / 2})")
        return self
