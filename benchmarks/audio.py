"""The audio plugin's conditional runs, against real audio: spoken digits (recognised?) and notes (in tune?).

    python benchmarks/audio.py --run runs/audio_digits   # after flowcore train examples/configs/audio_digits.yaml
    python benchmarks/audio.py --notes-run runs/audio_notes   # after ... examples/configs/audio_notes.yaml
    python benchmarks/audio.py --chorales-run runs/audio_chorales   # after ... audio_chorales.yaml
    python benchmarks/audio.py --vocoder-run runs/audio_vocoder   # after flowcore audio-vocoder runs/audio_vocoder
    python benchmarks/audio.py --vae-run runs/audio_vae --vocoder-run runs/audio_vocoder   # after ... audio_vae.yaml

It scores, with the plugin's spoken-digit classifier (trained on the train voices only):

    real              the 280 held-out test clips (14 voices never heard in training)
    griffin_lim       the same clips through the log-mel and back by Griffin-Lim (64 iterations):
                      what the representation itself costs (LSD and mel L1 against the originals)
    generated         28 samples per digit, Euler at each --steps, guidance --cfg, through Griffin-Lim

accuracy (the classifier's digit = the one asked for), the Fréchet distance of its features to
the real clips, and generated / real accuracy (the goal: at least 0.9). For notes it measures
pitch accuracy (librosa pyin, median f0 within 50 cents of the MIDI pitch asked for) of the
real test notes, of them through Griffin-Lim, and of 4 samples per pitch (the goal: 0.9 at 8
steps). For chorale excerpts it measures key agreement (the key from chroma against the
Krumhansl-Kessler profiles = the key asked for) and the MIREX-weighted key score, of the real test
excerpts, of them through Griffin-Lim, and of 4 samples per key. For the trained vocoder it
resynthesises the held-out spoken digits and test notes from their log-mel by Griffin-Lim (64
iterations) and by the vocoder and scores both (LSD, mel L1, digit accuracy, classifier FD,
pitch accuracy); for the mel VAE it does the same for its reconstructions, decoded by both.
Each run updates its part of
benchmarks/results/audio.json. It writes
benchmarks/results/audio.json, the "## audio" section of benchmarks/RESULTS.md, WAVs of
one generated sample per digit and a spectrogram PNG of them to benchmarks/results/audio_samples/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

import flowcore
from flowcore.io import dumps_json, write_text_atomic
from flowcore.metrics import frechet_distance
from flowcore.registry import get_registry
from flowcore_audio.classifier import load_classifier
from flowcore_audio.codec import AudioCodec
from flowcore_audio.metrics import key_agreement, key_score, lsd, mel_l1, pitch_accuracy

ROOT = Path(__file__).resolve().parent
DIGITS = 10


def scores(classifier, real: list[torch.Tensor], made: list[torch.Tensor], labels: list[int]) -> dict[str, float]:
    pred = classifier.predict(made)
    return {"accuracy": round(float((pred == torch.tensor(labels)).float().mean()), 4),
            "classifier_fd": round(frechet_distance(classifier.features(real), classifier.features(made)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a spoken-digits run (examples/configs/audio_digits.yaml)")
    ap.add_argument("--notes-run", type=Path, help="a notes run (examples/configs/audio_notes.yaml)")
    ap.add_argument("--chorales-run", type=Path, help="a chorales run (examples/configs/audio_chorales.yaml)")
    ap.add_argument("--vocoder-run", type=Path, help="a trained vocoder's folder (flowcore audio-vocoder)")
    ap.add_argument("--vae-run", type=Path, help="a mel VAE run (examples/configs/audio_vae.yaml)")
    ap.add_argument("--vocoder-training", default="", help="a sentence on how the vocoder was trained")
    ap.add_argument("--vae-training", default="", help="a sentence on how the VAE was trained")
    ap.add_argument("--vae-only", action="store_true",
                    help="with --vae-run and --vocoder-run: score the VAE only (decoding by the vocoder too)")
    ap.add_argument("--steps", default="8,16", help="comma-separated Euler step counts")
    ap.add_argument("--cfg", type=float, default=None, help="guidance weight (default: the run's sample.cfg)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--training", default="", help="a sentence on how the run was trained (goes in the report)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "audio.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.run:
        record.update(digits(args))
    if args.notes_run:
        record["notes"] = notes(args)
    if args.chorales_run:
        record["chorales"] = chorales(args)
    if args.vocoder_run and not args.vae_only:
        record["vocoder"] = vocoder(args)
    if args.vae_run:
        record["vae"] = vae(args)
    write_text_atomic(args.out, dumps_json(record, indent=1) + "\n")
    write_results_md(record, args.results_md)
    print(json.dumps(record, indent=1))


def command() -> str:
    return "python benchmarks/audio.py " + " ".join(sys.argv[1:])


def notes(args) -> dict:
    """Pitch accuracy of the real test notes, of them through Griffin-Lim, and of generated ones."""
    started = time.perf_counter()
    pipe = flowcore.load(args.notes_run, device="cpu")
    options = pipe.config.data.options
    test = get_registry().dataset("notes").build("test", **options)
    real = [test[i]["audio"] for i in range(len(test))]
    midi = [int(m) for m in test.info["midi"]]
    resynth = pipe.bundles["audio"].samples(pipe.encode("audio", real))
    low, high = int(options.get("low", 48)), int(options.get("high", 72))
    asked = [k for k in range(high - low + 1) for _ in range(4)]
    out = {"command": command(), "run": str(args.notes_run), "training": args.training, "test_clips": len(real),
           "real": {"pitch_accuracy": round(pitch_accuracy(real, midi), 4)},
           "griffin_lim": {"pitch_accuracy": round(pitch_accuracy(resynth, midi), 4),
                           "lsd": round(lsd(real, resynth), 3), "mel_l1": round(mel_l1(real, resynth), 3)},
           "cfg": pipe.config.sample.cfg if args.cfg is None else args.cfg, "generated": {}}
    for n in (int(s) for s in args.steps.split(",")):
        begun = time.perf_counter()
        made = pipe.generate("audio", {"label": asked}, len(asked), batch_size=50, steps=n, solver="euler",
                             cfg=out["cfg"], seed=0)["audio"]
        out["generated"][str(n)] = {"pitch_accuracy": round(pitch_accuracy(made, [low + k for k in asked]), 4),
                                    "samples": len(made), "seconds": round(time.perf_counter() - begun, 1)}
        print(f"notes, {n} steps: {out['generated'][str(n)]}", flush=True)
        for k in (0, 12, 24):  # C3, C4, C5
            AudioCodec(sample_rate=pipe.bundles["audio"].modality.sample_rate).write(
                made[asked.index(k)], ROOT / "results" / "audio_samples" / f"note{low + k}_{n}steps.wav")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def chorales(args) -> dict:
    """Key agreement and key score of the real test excerpts, of them through Griffin-Lim, and of generated ones."""
    started = time.perf_counter()
    pipe = flowcore.load(args.chorales_run, device="cpu")
    test = get_registry().dataset("chorales").build("test", **pipe.config.data.options)
    items = [test[i] for i in range(len(test))]
    real, keys = [it["audio"] for it in items], [int(it["label"]) for it in items]
    resynth = pipe.bundles["audio"].samples(pipe.encode("audio", real))

    def key_scores(clips, wanted) -> dict[str, float]:
        return {"key_agreement": round(key_agreement(clips, wanted), 4),
                "key_score": round(key_score(clips, wanted), 4)}

    asked = [k for k in range(24) for _ in range(4)]
    out = {"command": command(), "run": str(args.chorales_run), "training": args.training, "test_clips": len(real),
           "real": key_scores(real, keys), "griffin_lim": key_scores(resynth, keys),
           "cfg": pipe.config.sample.cfg if args.cfg is None else args.cfg, "generated": {}}
    for n in (int(s) for s in args.steps.split(",")):
        begun = time.perf_counter()
        made = pipe.generate("audio", {"label": asked}, len(asked), batch_size=48, steps=n, solver="euler",
                             cfg=out["cfg"], seed=0)["audio"]
        out["generated"][str(n)] = {**key_scores(made, asked), "samples": len(made),
                                    "seconds": round(time.perf_counter() - begun, 1)}
        print(f"chorales, {n} steps: {out['generated'][str(n)]}", flush=True)
        AudioCodec(sample_rate=pipe.bundles["audio"].modality.sample_rate).write(
            made[0], ROOT / "results" / "audio_samples" / f"chorale_c_major_{n}steps.wav")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def held_out_digits() -> tuple[list[torch.Tensor], list[int]]:
    test = get_registry().dataset("spoken_digits").build("test")
    items = [test[i] for i in range(len(test))]
    return [it["audio"] for it in items], [int(it["label"]) for it in items]


def timed(fn):
    begun = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - begun, 1)


def through(decoder, mel_of, waves: list[torch.Tensor], batch: int = 40) -> list[torch.Tensor]:
    """Each clip's mel (``mel_of``: waves [B, T] -> mel [B, M, F]) back to sound by ``decoder``, cut to its length."""
    out = []
    with torch.no_grad():
        for i in range(0, len(waves), batch):
            chunk = waves[i: i + batch]
            x = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            made = decoder(mel_of(x)).clamp(-1, 1)
            out += [m[: len(w)] for m, w in zip(made, chunk)]
    return out


def paired(classifier, real, made, labels=None) -> dict:
    row = {"lsd": round(lsd(real, made), 3), "mel_l1": round(mel_l1(real, made), 3)}
    if labels is not None:
        row.update(scores(classifier, real, made, labels))
    return row


def vocoder(args) -> dict:
    """Held-out spoken digits and test notes through the log-mel and back, by Griffin-Lim and by the vocoder."""
    from flowcore.cache import read_metadata
    from flowcore_audio.mel import LogMel
    from flowcore_audio.vocoder import load_vocoder, vocoder_file

    started = time.perf_counter()
    mel = LogMel()
    net = load_vocoder(args.vocoder_run)
    meta = read_metadata(vocoder_file(args.vocoder_run)) or {}
    classifier = load_classifier()
    real, labels = held_out_digits()
    out = {"command": command(), "run": str(args.vocoder_run), "training": args.vocoder_training,
           "vocoder": {"parameters": sum(p.numel() for p in net.parameters()), "steps": int(meta.get("steps", 0)),
                       "train_seconds": float(meta.get("train_seconds", 0)),
                       "recipe": json.loads(meta.get("recipe", "{}"))},
           "digits": {"clips": len(real), "real": scores(classifier, real, real, labels)}}
    decoders = {"griffin_lim": mel.inverse, "vocoder": net}
    made = {}
    for name, decode in decoders.items():
        made[name], seconds = timed(lambda: through(decode, mel, real))
        out["digits"][name] = {**paired(classifier, real, made[name], labels), "seconds": seconds}
        print(f"vocoder benchmark, digits, {name}: {out['digits'][name]}", flush=True)
    for name, path in (("griffin_lim", None), ("vocoder", str(args.vocoder_run))):
        # the modality's own way: frames rounded up to whole tokens (104 for 1 s), as generated clips decode
        modality = get_registry().modality("audio", vocoder=path)
        ae = modality.autoencoder()
        with torch.no_grad():
            again = [w for i in range(0, len(real), 40)
                     for w in modality.split(ae.decode(ae.encode(modality.collate(real[i: i + 40]))))]
        out["digits"][f"{name}_tokens"] = paired(classifier, real, again, labels)
        print(f"vocoder benchmark, digits through the modality, {name}: {out['digits'][f'{name}_tokens']}", flush=True)
    notes_test = get_registry().dataset("notes").build("test")
    notes = [notes_test[i]["audio"] for i in range(len(notes_test))]
    midi = [int(m) for m in notes_test.info["midi"]]
    out["notes"] = {"clips": len(notes), "real": {"pitch_accuracy": round(pitch_accuracy(notes, midi), 4)}}
    for name, decode in decoders.items():
        again = through(decode, mel, notes)
        out["notes"][name] = {**paired(None, notes, again), "pitch_accuracy": round(pitch_accuracy(again, midi), 4)}
        print(f"vocoder benchmark, notes, {name}: {out['notes'][name]}", flush=True)
    samples = ROOT / "results" / "audio_samples"
    codec = AudioCodec()
    for k in range(3):
        for name, waves in (("real", real), *made.items()):
            codec.write(waves[k * 28], samples / f"resynth_digit{labels[k * 28]}_{name}.wav")
    audio = get_registry().modality("audio")
    audio.preview([w for k in range(3) for w in (real[k * 28], made["griffin_lim"][k * 28], made["vocoder"][k * 28])],
                  samples / "resynth_digits.png", count=9)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def vae(args) -> dict:
    """Held-out spoken digits through the mel VAE and back (by Griffin-Lim, and by the vocoder when given)."""
    from flowcore.train import checkpoint as ckpt
    from flowcore.train.bundle import build_modality, load_autoencoder_run
    from flowcore_audio.mel import LogMel
    from flowcore_audio.vocoder import load_vocoder

    started = time.perf_counter()
    registry = get_registry()
    config = ckpt.run_config(args.vae_run, registry)
    modality = build_modality(config, "audio", registry)
    model = modality.autoencoder()
    load_autoencoder_run(model, str(args.vae_run), "audio", str(args.vae_run))
    model.eval()
    mel = LogMel()
    classifier = load_classifier()
    real, labels = held_out_digits()

    def vae_mel(x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((len(x),), x.shape[1])
        latent = model.encode({"wave": x, "lengths": lengths})
        frames = mel.frames(x.shape[1])
        return model.decode_mel(latent["mel"])[:, 0, :, :frames].clamp(-1, 1)

    with torch.no_grad():
        x = torch.stack(real)
        target = mel(x)
        recon = torch.cat([vae_mel(x[i: i + 40]) for i in range(0, len(x), 40)])
    out = {"command": command(), "run": str(args.vae_run), "training": args.vae_training,
           "latent": {"channels": model.latent_channels, "shape": list(model.encode(
               {"wave": x[:1], "lengths": torch.tensor([x.shape[1]])})["mel"].shape[1:])},
           "parameters": sum(p.numel() for p in model.parameters()),
           "normalised_mel_l1": round(float((recon - target).abs().mean()), 4),
           "clips": len(real), "real": scores(classifier, real, real, labels)}
    decoders = {"griffin_lim": mel.inverse}
    if args.vocoder_run:
        decoders["vocoder"] = load_vocoder(args.vocoder_run)
    made = {}
    for name, decode in decoders.items():
        made[name] = through(decode, vae_mel, real)
        out[name] = paired(classifier, real, made[name], labels)
        print(f"vae benchmark, {name}: {out[name]}", flush=True)
    samples = ROOT / "results" / "audio_samples"
    best = "vocoder" if "vocoder" in made else "griffin_lim"
    for k in range(3):
        AudioCodec().write(made[best][k * 28], samples / f"vae_digit{labels[k * 28]}_{best}.wav")
    with torch.no_grad():
        panels = [w for k in range(3) for w in (real[k * 28], made[best][k * 28])]
    registry.modality("audio").preview(panels, samples / "vae_digits.png", count=6)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def digits(args) -> dict:
    """Digit accuracy and classifier FD of real, Griffin-Lim and generated spoken digits."""
    started = time.perf_counter()
    pipe = flowcore.load(args.run, device="cpu")
    cfg = pipe.config.sample.cfg if args.cfg is None else args.cfg
    test = get_registry().dataset("spoken_digits").build("test", **pipe.config.data.options)
    items = [test[i] for i in range(len(test))]
    real = [it["audio"] for it in items]
    labels = [int(it["label"]) for it in items]
    classifier = load_classifier()
    bundle = pipe.bundles["audio"]

    resynth = bundle.samples(pipe.encode("audio", real))
    record = {"command": command(), "run": str(args.run),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "torch": torch.__version__},
              "training": args.training,
              "classifier": {"test_accuracy": round(classifier.test_accuracy, 4), "test_count": classifier.test_count},
              "held_out": {"clips": len(real), "voices": "14 never heard in training"},
              "real": scores(classifier, real, real, labels),
              "griffin_lim": {**scores(classifier, real, resynth, labels),
                              "lsd": round(lsd(real, resynth), 3), "mel_l1": round(mel_l1(real, resynth), 3)},
              "cfg": cfg, "generated": {}}
    per_digit = len(real) // DIGITS
    asked = [d for d in range(DIGITS) for _ in range(per_digit)]
    for n in (int(s) for s in args.steps.split(",")):
        begun = time.perf_counter()
        made = pipe.generate("audio", {"label": asked}, len(asked), batch_size=70, steps=n, solver="euler",
                             cfg=cfg, seed=0)["audio"]
        row = scores(classifier, real, made, asked)
        row["relative_accuracy"] = round(row["accuracy"] / record["real"]["accuracy"], 4)
        row["seconds"] = round(time.perf_counter() - begun, 1)
        record["generated"][str(n)] = row
        print(f"{n} steps: {row}", flush=True)
        samples_dir = ROOT / "results" / "audio_samples"
        first = [made[d * per_digit] for d in range(DIGITS)]
        for d, wave in enumerate(first):
            AudioCodec(sample_rate=bundle.modality.sample_rate).write(wave, samples_dir / f"digit{d}_{n}steps.wav")
        bundle.modality.preview(first, samples_dir / f"digits_{n}steps.png")
    write_index(ROOT / "results" / "audio_samples", [int(s) for s in args.steps.split(",")])
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def write_index(folder: Path, steps: list[int]) -> None:
    """An HTML page with a player per generated digit and the spectrograms, to listen to the samples."""
    rows = "".join(f"<tr><td>{d}</td>" + "".join(f'<td><audio controls src="digit{d}_{n}steps.wav"></audio></td>'
                                               for n in steps) + "</tr>\n" for d in range(DIGITS))
    heads = "".join(f"<th>{n} Euler steps</th>" for n in steps)
    images = "".join(f'<p>{n} steps (digits 0-7, top to bottom)<br><img src="digits_{n}steps.png"></p>' for n in steps)
    write_text_atomic(folder / "index.html", f"""<!doctype html><meta charset="utf-8"><title>spoken digits</title>
<h1>Class-conditional spoken digits (benchmarks/audio.py)</h1>
<table><tr><th>digit</th>{heads}</tr>
{rows}</table>{images}
""")


def write_results_md(record: dict, path: Path) -> None:
    rows = [f"| real held-out clips | {record['real']['accuracy']:.3f} | 0 | - | - |",
            f"| real through log-mel + Griffin-Lim | {record['griffin_lim']['accuracy']:.3f} | "
            f"{record['griffin_lim']['classifier_fd']:.2f} | {record['griffin_lim']['lsd']:.2f} | "
            f"{record['griffin_lim']['mel_l1']:.3f} |"]
    for n, row in record["generated"].items():
        rows.append(f"| generated, {n} Euler steps, cfg {record['cfg']:g} (relative accuracy "
                    f"{row['relative_accuracy']:.3f}) | {row['accuracy']:.3f} | {row['classifier_fd']:.2f} | - | - |")
    text = "\n".join([
        "## audio", "",
        f"Spoken digits (espeak-ng, 14 held-out voices, {record['held_out']['clips']} clips), run "
        f"`{record['run']}` (examples/configs/audio_digits.yaml: the core FlowTransformer on log-mel patch tokens, "
        "class label as a condition)" + (f"; {record['training']}" if record["training"] else "")
        + ". Scored by the plugin's spoken-digit classifier "
        f"(test accuracy {record['classifier']['test_accuracy']:.3f}); the goal is generated accuracy at least "
        "0.9 of the real clips'. Command: `" + record["command"] + "`.", "",
        "| audio | digit accuracy | classifier FD | LSD | mel L1 |", "| --- | --- | --- | --- | --- |", *rows, ""])
    if "notes" in record:
        text += "\n" + notes_md(record["notes"])
    if "chorales" in record:
        text += "\n" + chorales_md(record["chorales"])
    if "vocoder" in record:
        text += "\n" + vocoder_md(record["vocoder"])
    if "vae" in record:
        text += "\n" + vae_md(record["vae"], record.get("vocoder"))
    replace_section(path, "audio", text)


def table_md(part: dict, what: str, items: str, columns: list[tuple[str, str, str]]) -> list[str]:
    """The Markdown table of one task: real, real through Griffin-Lim, then each step count generated.
    ``columns``: (heading, key, format); a value a row lacks is "-"."""
    def cells(row: dict) -> str:
        return " | ".join(format(row[key], fmt) if key in row else "-" for _, key, fmt in columns)

    lines = [f"| {what} | " + " | ".join(h for h, _, _ in columns) + " |", "| --- |" + " --- |" * len(columns),
             f"| real test {items} | {cells(part['real'])} |",
             f"| real through log-mel + Griffin-Lim | {cells(part['griffin_lim'])} |"]
    lines += [f"| generated, {n} Euler steps, cfg {part['cfg']:g} ({row['samples']} samples) | {cells(row)} |"
              for n, row in part["generated"].items()]
    return lines


def run_md(part: dict, what: str, config: str, condition: str, measure: str) -> str:
    """The paragraph before a task's table: the run, how it was trained, what is measured, the command."""
    return (f"{what}, run `{part['run']}` (examples/configs/{config}: the same network, {condition} as a condition)"
            + (f"; {part['training']}" if part["training"] else "") + f". {measure} Command: `{part['command']}`.")


def chorales_md(ch: dict) -> str:
    return "\n".join([
        run_md(ch, "Bach chorale excerpts (music21 corpus, rendered by fluidsynth, transposed into all 24 keys)",
               "audio_chorales.yaml", "the key",
               "Key agreement: the key from chroma against the Krumhansl-Kessler profiles is the key asked for "
               f"({ch['test_clips']} real test excerpts); key score: MIREX weights (fifth 0.5, relative 0.3, "
               "parallel 0.2)."), "",
        *table_md(ch, "chorales", "excerpts",
                  [("key agreement", "key_agreement", ".3f"), ("key score", "key_score", ".3f")]),
        ""])


def notes_md(notes: dict) -> str:
    return "\n".join([
        run_md(notes, "Notes (fluidsynth, 6 General MIDI instruments, MIDI pitches 48-72)", "audio_notes.yaml",
               "the pitch", "Pitch accuracy: pyin's median f0 within 50 cents of the pitch asked for, "
               f"{notes['test_clips']} real test notes; the goal is 0.9 at 8 steps."), "",
        *table_md(notes, "notes", "notes", [("pitch accuracy", "pitch_accuracy", ".3f"), ("LSD", "lsd", ".2f"),
                                   ("mel L1", "mel_l1", ".3f")]),
        ""])


def vocoder_md(v: dict) -> str:
    d, n = v["digits"], v["notes"]
    net = v["vocoder"]
    lines = [
        f"Vocoder, `{v['run']}`: Vocos-style, {net['parameters']:,} parameters (ConvNeXt blocks on the log-mel, an "
        f"iSTFT head), mel L1 + multi-resolution STFT loss, no adversarial term, {net['steps']:,} steps in "
        f"{net['train_seconds'] / 60:.1f} min" + (f"; {v['training']}" if v["training"] else "")
        + f". Real clips through the log-mel and back: {d['clips']} held-out spoken digits (14 unheard voices) and "
        f"{n['clips']} test notes; the goal is a lower LSD and a higher digit accuracy than Griffin-Lim (64 "
        "iterations). Command: `" + v["command"] + "`.", "",
        "| mel -> waveform | digits LSD | digits mel L1 | digit accuracy | classifier FD | notes LSD | notes mel L1 "
        "| pitch accuracy | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| real clips | - | - | {d['real']['accuracy']:.3f} | 0 | - | - | {n['real']['pitch_accuracy']:.3f} | - |"]
    for name, label in (("griffin_lim", "Griffin-Lim, 64 iterations"), ("vocoder", "trained vocoder")):
        a, b = d[name], n[name]
        lines.append(f"| {label} | {a['lsd']:.3f} | {a['mel_l1']:.3f} | {a['accuracy']:.3f} | {a['classifier_fd']:.2f} "
                     f"| {b['lsd']:.3f} | {b['mel_l1']:.3f} | {b['pitch_accuracy']:.3f} | {a['seconds']:.1f} |")
    for name, label in (("griffin_lim", "Griffin-Lim"), ("vocoder", "trained vocoder")):
        a = d.get(f"{name}_tokens")
        if a is not None:
            lines.append(f"| {label}, through the modality (frames rounded up to whole tokens, as samples decode) "
                         f"| {a['lsd']:.3f} | {a['mel_l1']:.3f} | {a['accuracy']:.3f} | {a['classifier_fd']:.2f} "
                         "| - | - | - | - |")
    return "\n".join(lines + [""])


def vae_md(v: dict, voc: dict | None) -> str:
    lines = [
        f"Mel KL-VAE, run `{v['run']}` (examples/configs/audio_vae.yaml: latent {v['latent']['shape']} per second, "
        f"{v['parameters']:,} parameters)" + (f"; {v['training']}" if v["training"] else "")
        + f". Its reconstructions of the {v['clips']} held-out spoken digits (normalised mel L1 "
        f"{v['normalised_mel_l1']:.3f}), back to sound by each way, against the log-mel alone (the vocoder "
        "table's rows). Command: `"
        + v["command"] + "`.", "",
        "| audio | LSD | mel L1 | digit accuracy | classifier FD |", "| --- | --- | --- | --- | --- |",
        f"| real held-out clips | - | - | {v['real']['accuracy']:.3f} | 0 |"]
    for name, label in (("griffin_lim", "Griffin-Lim"), ("vocoder", "trained vocoder")):
        rows = (("log-mel", voc["digits"].get(name) if voc else None), ("VAE", v.get(name)))
        for what, r in rows:
            if r is not None:
                lines.append(f"| {what} -> {label} | {r['lsd']:.3f} | {r['mel_l1']:.3f} | {r['accuracy']:.3f} "
                             f"| {r['classifier_fd']:.2f} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()
