"""Options of the audio modality: a pydantic model, no torch.

The entry point (flowcore_audio/plugin.py) declares it on the modality's spec, so a config is
checked against it before torch or this plugin's heavy modules are imported. The defaults are
those of :class:`flowcore_audio.modality.Audio` (FluxMusic's mel: 16 kHz, n_fft 1024, hop 160,
64 mels).
"""

from __future__ import annotations

from typing import Annotated, Literal

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
    #: what the flow moves: the log-mel itself, or the latent of a KL-VAE on it (trained by `stage: autoencoder`)
    space: Literal["mel", "vae"] = "mel"
    #: VAE latent channels (space: vae)
    latent_channels: int = Field(8, ge=1)
    #: channels of the VAE's first level (space: vae)
    vae_width: int = Field(32, ge=8)
    #: weight of the VAE's KL term (space: vae)
    kl_weight: Number = Field(1e-4, ge=0)
    #: the metric classifier that scores samples (class accuracy, classifier FD); null = none
    classifier: Literal["spoken_digits"] | None = None
    #: a trained vocoder (folder or vocoder.safetensors, `flowcore audio-vocoder`); null or griffin_lim = Griffin-Lim
    vocoder: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> AudioOptions:
        bins = self.patch if isinstance(self.patch, int) else self.patch[1]
        if self.n_mels % bins:
            raise ValueError(f"n_mels ({self.n_mels}) must be a multiple of the patch's bins ({bins})")
        if self.space == "vae" and self.n_mels % (4 * bins):
            raise ValueError(f"space vae: n_mels ({self.n_mels}) must be a multiple of 4 x the patch's bins ({bins}): "
                             "the latent has n_mels / 4 bins")
        if self.hop > self.n_fft:
            raise ValueError(f"hop ({self.hop}) must not exceed n_fft ({self.n_fft})")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max ({self.f_max}) must not exceed sample_rate / 2 ({self.sample_rate / 2})")
        return self


# ----------------------------------------------------------------------------- datasets (flowcore_audio.data)

#: where the Debian package sonic-pi-samples puts its FLAC recordings
SONIC_PI_ROOT = "/usr/share/sonic-pi/samples"
MidiProgram = Annotated[int, Field(ge=0, le=127)]
MidiVelocity = Annotated[int, Field(ge=1, le=127)]


class ClipOptions(Options):
    """What every audio dataset takes: the rate, at most ``limit`` items of the split, the seed."""

    sample_rate: int = Field(16000, ge=1000)
    limit: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)


class SpokenDigitsOptions(ClipOptions):
    """``data.options`` of spoken_digits."""

    #: times each voice speaks the ten digits, each take with its own accent, speed and pitch
    takes: int = Field(2, ge=1)
    #: seconds per clip: the word centred, padded with silence (or cut)
    duration: Number = Field(1.0, gt=0)


class NotesOptions(ClipOptions):
    """``data.options`` of notes."""

    #: General MIDI programs (0 piano, 20 reed organ, 24 nylon guitar, 48 strings, 56 trumpet, 73 flute)
    programs: list[MidiProgram] = Field([0, 20, 24, 48, 56, 73], min_length=1)
    #: the MIDI pitch range, both ends included
    low: int = Field(48, ge=0, le=127)
    high: int = Field(72, ge=0, le=127)
    velocities: list[MidiVelocity] = Field([60, 90, 120], min_length=1)
    #: also a major and a minor triad on every pitch
    chords: bool = False
    duration: Number = Field(1.0, gt=0)
    #: the share of ``duration`` the key is held; the rest is the release
    hold: Number = Field(0.6, gt=0, le=1)
    #: which recorded fact is the item's label
    label: Literal["pitch", "instrument", "velocity", "chord"] = "pitch"
    #: a General MIDI .sf2; null = the installed Debian soundfont
    soundfont: str | None = None

    @model_validator(mode="after")
    def _range(self) -> NotesOptions:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.label == "chord" and not self.chords:
            raise ValueError("label chord needs chords: true")
        return self


class ChoralesOptions(ClipOptions):
    """``data.options`` of chorales."""

    #: chorales drawn from the music21 corpus's 410 Bach chorales
    count: int = Field(60, ge=3, le=410)
    #: excerpts per chorale, each starting on a random beat
    excerpts: int = Field(4, ge=1)
    duration: Number = Field(4.0, gt=0)
    #: quarter notes a minute
    bpm: Number = Field(100.0, gt=0)
    #: General MIDI programs, one drawn per excerpt (19 church organ, 52 choir, 48 strings, 0 piano)
    programs: list[MidiProgram] = Field([19, 52, 48, 0], min_length=1)
    #: move each excerpt by a random -5..+6 semitones, so that all 24 keys occur
    transpose: bool = True
    label: Literal["key", "instrument"] = "key"
    soundfont: str | None = None


class FolkSongsOptions(ChoralesOptions):
    """``data.options`` of folk_songs (the Essen collection of the music21 corpus): the chorales' keys."""

    #: tunes drawn from the collection's 8,462
    count: int = Field(120, ge=3, le=8462)
    excerpts: int = Field(2, ge=1)
    #: General MIDI programs, one drawn per excerpt (73 flute, 0 piano, 24 nylon guitar, 40 violin)
    programs: list[MidiProgram] = Field([73, 0, 24, 40], min_length=1)


class SonicPiOptions(ClipOptions):
    """``data.options`` of sonic_pi."""

    duration: Number = Field(1.0, gt=0)
    #: the folder of the FLAC files (Debian package sonic-pi-samples)
    root: str = SONIC_PI_ROOT
    #: a recording's later clips quieter than this (RMS, dBFS) are dropped
    silence_db: Number = -50.0
