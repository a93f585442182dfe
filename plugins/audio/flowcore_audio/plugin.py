"""Entry point of flowcore-audio. Tiny on purpose: specs only, no torch, no soundfile."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_audio.options import AudioOptions, ChoralesOptions, NotesOptions, SonicPiOptions, SpokenDigitsOptions

DATA = "flowcore_audio.data"

#: the datasets of the audio modality (flowcore_audio/data.py)
DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("spoken_digits", ("audio", "label"), f"{DATA}:spoken_digits",
                "the digits 0-9 spoken by espeak-ng in 70 voices, accents, speeds and pitches; 10 classes; "
                "test voices never heard in training", requires="Debian package espeak-ng",
                options=SpokenDigitsOptions),
    DatasetSpec("notes", ("audio", "label"), f"{DATA}:notes",
                "single notes (optionally triads) of General MIDI instruments rendered by fluidsynth; "
                "label pitch, instrument, velocity or chord",
                requires="Debian packages fluidsynth and timgm6mb-soundfont", options=NotesOptions),
    DatasetSpec("chorales", ("audio", "label"), f"{DATA}:chorales",
                "excerpts of Bach chorales (music21 corpus) rendered by fluidsynth; label key (24) or instrument",
                requires="Debian packages fluidsynth and timgm6mb-soundfont; pip music21", options=ChoralesOptions),
    DatasetSpec("sonic_pi", ("audio", "label"), f"{DATA}:sonic_pi",
                "sonic-pi's real recordings (drums, bass, ambient, loops...) cut into clips; label category",
                requires="Debian package sonic-pi-samples", options=SonicPiOptions),
)


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="audio",
            factory="flowcore_audio.modality:Audio",
            description="mono waveforms [T] in [-1, 1]: log-mel patch tokens with (frame, bin) positions, "
                        "Griffin-Lim back to sound",
            datasets=DATASETS,
            metrics=("lsd", "mel_l1", "chroma_similarity"),
            has_codec=True,
            has_autoencoder=True,
            options=AudioOptions,
        )
    ]
