"""The audio plugin's conditional runs, against real audio: spoken digits (recognised?) and notes (in tune?).

    python benchmarks/audio.py --run runs/audio_digits   # after flowcore train examples/configs/audio_digits.yaml
    python benchmarks/audio.py --notes-run runs/audio_notes   # after ... examples/configs/audio_notes.yaml
    python benchmarks/audio.py --chorales-run runs/audio_chorales   # after ... audio_chorales.yaml

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
excerpts, of them through Griffin-Lim, and of 4 samples per key. Each run updates its part of
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


if __name__ == "__main__":
    main()
