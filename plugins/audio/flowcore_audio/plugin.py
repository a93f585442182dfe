"""Entry point of flowcore-audio. Tiny on purpose: specs only, no torch, no soundfile."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_audio.options import (
    AudioOptions,
    ChoralesOptions,
    FolkSongsOptions,
    NotesOptions,
    SonicPiOptions,
    SpokenDigitsOptions,
)

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
    DatasetSpec("folk_songs", ("audio", "label"), f"{DATA}:folk_songs",
                "excerpts of folk songs (the Essen collection of the music21 corpus) rendered by fluidsynth; "
                "label key (24) or instrument",
                requires="Debian packages fluidsynth and timgm6mb-soundfont; pip music21", options=FolkSongsOptions),
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


@hookimpl
def flowcore_add_commands(subparsers):
    p = subparsers.add_parser(
        "audio-vocoder",
        help="train the audio plugin's vocoder (log-mel -> waveform) and save it as OUT/vocoder.safetensors")
    p.add_argument("out", help="folder for vocoder.safetensors (the audio modality's `vocoder` option names it)")
    p.add_argument("--datasets", default="spoken_digits,notes",
                   help="comma-separated audio datasets it learns from (train splits; default spoken_digits,notes)")
    p.add_argument("--steps", type=int, default=10000, help="training steps at most (default 10000)")
    p.add_argument("--minutes", type=float, default=25.0, help="stop after this many minutes (default 25)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_vocoder_command)


def _vocoder_command(args) -> int:
    import torch

    from flowcore_audio.vocoder import VocoderRecipe, train_vocoder

    torch.set_num_threads(args.threads)
    recipe = VocoderRecipe(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, seed=args.seed,
                           datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()))
    path = train_vocoder(args.out, recipe, log=lambda line: print(line, flush=True))
    print(f"vocoder saved to {path}")
    return 0
