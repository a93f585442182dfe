"""Entry point of flowcore-audio. Tiny on purpose: specs only, no torch, no soundfile."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_audio.options import AudioOptions

DATA = "flowcore_audio.data"

#: the datasets of the audio modality (flowcore_audio/data.py)
DATASETS: tuple[DatasetSpec, ...] = ()


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
