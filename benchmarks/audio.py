"""The audio plugin's conditional runs, against real audio: spoken digits (recognised?) and notes (in tune?).

    python benchmarks/audio.py --run runs/audio_digits   # after flowcore train examples/configs/audio_digits.yaml
    python benchmarks/audio.py --run runs/audio_digits --plugin-run runs/audio_digits_unet   # and audio_digits_unet
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
pitch accuracy, and which clips of which voices the classifier misses); for the mel VAE it does
the same for its reconstructions, decoded by both. With --plugin-run (beside --run) it scores a
second spoken-digits run, of the plugin's own network, the same way and sets the two side by side
("core backbone vs plugin network"): parameters, training, the seconds of one training step and
of sampling (both measured here), accuracy and classifier FD.

Each run updates its part of benchmarks/results/audio.json and rewrites the "## audio" section of
benchmarks/RESULTS.md from it; WAVs of one generated sample per digit and a spectrogram PNG of
them go to benchmarks/results/audio_samples/.
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
from scipy.stats import binomtest

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
    ap.add_argument("--plugin-run", type=Path,
                    help="with --run: a spoken-digits run of the plugin's network (audio_digits_unet.yaml), "
                         "scored the same way and set beside it")
    ap.add_argument("--notes-run", type=Path, help="a notes run (examples/configs/audio_notes.yaml)")
    ap.add_argument("--chorales-run", type=Path, help="a chorales run (examples/configs/audio_chorales.yaml)")
    ap.add_argument("--vocoder-run", type=Path, help="a trained vocoder's folder (flowcore audio-vocoder)")
    ap.add_argument("--vae-run", type=Path, help="a mel VAE run (examples/configs/audio_vae.yaml)")
    ap.add_argument("--digit-takes", type=int, default=2,
                    help="vocoder and VAE: takes per held-out voice and digit (2: the 280 test clips; 32: 4,480)")
    ap.add_argument("--vocoder-training", default="", help="a sentence on how the vocoder was trained")
    ap.add_argument("--vae-training", default="", help="a sentence on how the VAE was trained")
    ap.add_argument("--vae-only", action="store_true",
                    help="with --vae-run and --vocoder-run: score the VAE only (decoding by the vocoder too)")
    ap.add_argument("--steps", default="8,16", help="comma-separated Euler step counts")
    ap.add_argument("--cfg", type=float, default=None, help="guidance weight (default: the run's sample.cfg)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--training", default="", help="a sentence on how the run was trained (goes in the report)")
    ap.add_argument("--plugin-training", default="", help="the same for --plugin-run")
    ap.add_argument("--train-minutes", type=float, default=None, help="--run's training wall time, minutes")
    ap.add_argument("--plugin-train-minutes", type=float, default=None, help="--plugin-run's, minutes")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "audio.json")
    ap.add_argument("--results-md", type=Path, default=ROOT / "RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.run:
        record.update(digits(args))
        record.pop("plugin_network", None)
    if args.plugin_run:
        if not args.run:
            ap.error("--plugin-run is set beside --run: give both, so that both are scored in one go")
        record["plugin_network"] = digits(args, plugin=True)
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


def held_out_digits(voices: bool = False, takes: int = 2):
    """The held-out spoken digits and their digits (and, with ``voices``, each clip's voice index).

    ``takes`` per voice and digit: the first two are the dataset's default takes; more add
    renderings of the same held-out voices at other accents, speeds and pitches."""
    test = get_registry().dataset("spoken_digits").build("test", takes=takes)
    items = [test[i] for i in range(len(test))]
    out = [it["audio"] for it in items], [int(it["label"]) for it in items]
    return (*out, [int(v) for v in test.info["voice"]]) if voices else out


def misses(classifier, waves: list[torch.Tensor], labels: list[int], voices: list[int]) -> dict:
    """Which clips the classifier gets wrong (indices and the digit it heard) and how many per voice."""
    from flowcore_audio.data import VOICES

    pred = classifier.predict(waves).tolist()
    wrong = [i for i, (p, y) in enumerate(zip(pred, labels)) if p != y]
    by_voice: dict[str, int] = {}
    for i in wrong:
        by_voice[VOICES[voices[i]]] = by_voice.get(VOICES[voices[i]], 0) + 1
    return {"clips": wrong, "heard": [pred[i] for i in wrong], "by_voice": by_voice}


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
    real, labels, voices = held_out_digits(voices=True, takes=args.digit_takes)
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
    out["digits"]["misses"] = {name: misses(classifier, waves, labels, voices)
                               for name, waves in (("real", real), *made.items())}
    print(f"vocoder benchmark, digits the classifier misses: {out['digits']['misses']}", flush=True)
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
    real, labels = held_out_digits(takes=args.digit_takes)

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


def digits(args, plugin: bool = False) -> dict:
    """Digit accuracy and classifier FD of real, Griffin-Lim and generated spoken digits; with ``plugin``, of
    ``--plugin-run``'s generated ones only (real and Griffin-Lim rows are the same clips)."""
    started = time.perf_counter()
    run = args.plugin_run if plugin else args.run
    pipe = flowcore.load(run, device="cpu")
    cfg = pipe.config.sample.cfg if args.cfg is None else args.cfg
    test = get_registry().dataset("spoken_digits").build("test", **pipe.config.data.options)
    items = [test[i] for i in range(len(test))]
    real = [it["audio"] for it in items]
    labels = [int(it["label"]) for it in items]
    classifier = load_classifier()
    bundle = pipe.bundles["audio"]
    train = pipe.config.train
    record = {"command": command(), "run": str(run),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "torch": torch.__version__},
              "training": args.plugin_training if plugin else args.training,
              "network": {"name": pipe.config.model.network, "options": dict(pipe.config.model.options),
                          "parameters": sum(p.numel() for p in pipe.net.parameters()),
                          "train_steps": train.steps, "batch_size": train.batch_size,
                          "train_threads": train.cpu_threads,
                          "train_minutes": args.plugin_train_minutes if plugin else args.train_minutes,
                          "train_step_seconds": train_step_seconds(pipe, train.batch_size)},
              "classifier": {"test_accuracy": round(classifier.test_accuracy, 4), "test_count": classifier.test_count},
              "held_out": {"clips": len(real), "voices": "14 never heard in training"},
              "real": scores(classifier, real, real, labels), "cfg": cfg, "generated": {}}
    print(f"{run}: {record['network']}", flush=True)
    if not plugin:
        resynth = bundle.samples(pipe.encode("audio", real))
        record["griffin_lim"] = {**scores(classifier, real, resynth, labels),
                                 "lsd": round(lsd(real, resynth), 3), "mel_l1": round(mel_l1(real, resynth), 3)}
    per_digit = len(real) // DIGITS
    asked = [d for d in range(DIGITS) for _ in range(per_digit)]
    for n in (int(s) for s in args.steps.split(",")):
        begun, network, made = time.perf_counter(), 0.0, []
        for start in range(0, len(asked), 70):  # batch k drawn with seed k * 70, as generate(batch_size=70) does
            chunk = asked[start: start + 70]
            tokens, seconds = timed(lambda: pipe.generate("audio", {"label": chunk}, len(chunk), steps=n,
                                                          solver="euler", cfg=cfg, seed=start, decode=False))
            network += seconds
            made += bundle.samples(tokens["audio"])
        row = scores(classifier, real, made, asked)
        row["relative_accuracy"] = round(row["accuracy"] / record["real"]["accuracy"], 4)
        row["seconds"] = round(time.perf_counter() - begun, 1)
        row["network_seconds"] = round(network, 1)
        record["generated"][str(n)] = row
        print(f"{run}, {n} steps: {row}", flush=True)
        samples_dir = ROOT / "results" / "audio_samples"
        first = [made[d * per_digit] for d in range(DIGITS)]
        tag = "_plugin" if plugin else ""
        for d, wave in enumerate(first):
            AudioCodec(sample_rate=bundle.modality.sample_rate).write(wave, samples_dir / f"digit{d}_{n}steps{tag}.wav")
        bundle.modality.preview(first, samples_dir / f"digits_{n}steps{tag}.png")
    if plugin or not args.plugin_run:
        write_index(ROOT / "results" / "audio_samples", [int(s) for s in args.steps.split(",")], bool(args.plugin_run))
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def train_step_seconds(pipe, batch: int, steps: int = 5) -> float:
    """Seconds of one training step of the run's network (forward, backward, AdamW) on a batch of 1 s clips
    and labels, on this machine with --threads: the network's cost alone, data loading aside."""
    import copy

    from flowcore.modality import Tokens

    net = copy.deepcopy(pipe.net).train().requires_grad_(True)  # loaded for inference: frozen
    audio = pipe.bundles["audio"].layout(batch)
    audio = audio.with_values(torch.randn_like(audio.values))
    label = Tokens((2 * torch.nn.functional.one_hot(torch.arange(batch) % DIGITS, DIGITS).float() - 1)[:, None],
                   torch.zeros(batch, 1, 1), torch.ones(batch, 1, dtype=torch.bool))
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    times = []
    for _ in range(steps + 1):
        begun = time.perf_counter()
        with torch.enable_grad():
            out = net({"audio": audio, "label": label}, {"audio": torch.rand(batch), "label": torch.zeros(batch)})
            loss = out["audio"].pow(2).mean()
            opt.zero_grad()
            loss.backward()
        opt.step()
        times.append(time.perf_counter() - begun)
    return round(sorted(times[1:])[steps // 2], 3)  # the median, the first (warm-up) step aside


def write_index(folder: Path, steps: list[int], plugin: bool = False) -> None:
    """An HTML page with a player per generated digit and the spectrograms, to listen to the samples
    (with ``plugin``, the plugin network's beside the core backbone's)."""
    kinds = [("", "core backbone")] + ([("_plugin", "plugin network")] if plugin else [])
    rows = "".join(f"<tr><td>{d}</td>" + "".join(f'<td><audio controls src="digit{d}_{n}steps{tag}.wav"></audio></td>'
                                               for tag, _ in kinds for n in steps) + "</tr>\n" for d in range(DIGITS))
    heads = "".join(f"<th>{what}, {n} Euler steps</th>" for _, what in kinds for n in steps)
    images = "".join(f'<p>{what}, {n} steps (digits 0-7, top to bottom)<br><img src="digits_{n}steps{tag}.png"></p>'
                     for tag, what in kinds for n in steps)
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
    if "plugin_network" in record:
        text += "\n" + networks_md(record, record["plugin_network"])
    if "notes" in record:
        text += "\n" + notes_md(record["notes"])
    if "chorales" in record:
        text += "\n" + chorales_md(record["chorales"])
    if "vocoder" in record:
        text += "\n" + vocoder_md(record["vocoder"])
    if "vae" in record:
        text += "\n" + vae_md(record["vae"], record.get("vocoder"))
    replace_section(path, "audio", text)


def networks_md(core: dict, plugin: dict) -> str:
    """The table "core backbone vs plugin network": the same data, flow, guidance and sampler, two networks."""
    def row(what: str, r: dict) -> str:
        net, gen = r["network"], r["generated"]
        minutes = f", {net['train_minutes']:.1f} min" if net.get("train_minutes") else ""
        cells = [what, f"`{net['name']}`", f"{net['parameters']:,}",
                 f"{net['train_steps']:,} x {net['batch_size']}{minutes} ({net['train_threads']} thread"
                 + ("s" if net["train_threads"] != 1 else "") + ")", f"{net['train_step_seconds']:.2f}"]
        for n in gen:
            cells += [f"{gen[n]['accuracy']:.3f} ({gen[n]['relative_accuracy']:.3f})", f"{gen[n]['classifier_fd']:.1f}"]
        cells.append(" / ".join(f"{gen[n]['network_seconds']:.1f}" for n in gen))
        return "| " + " | ".join(cells) + " |"

    steps = list(core["generated"])
    heads = ["network", "model.network", "parameters", "trained (steps x batch, wall)",
             f"s / training step (batch {core['network']['batch_size']}, {core['machine']['threads']} thread"
             + ("s" if core["machine"]["threads"] != 1 else "") + ", here)"]
    for n in steps:
        heads += [f"accuracy (relative), {n} steps", f"classifier FD, {n} steps"]
    heads.append(f"network seconds for {core['held_out']['clips']} clips, " + " / ".join(steps) + " steps")
    return "\n".join([
        "Core backbone vs plugin network: the run above beside `" + plugin["run"] + "` (examples/configs/"
        "audio_digits_unet.yaml: the plugin's conv U-Net over the log-mel, flowcore_audio.network:MelUNet), with the "
        "same data, flow (logit-normal t, label dropout 0.1), guidance (cfg "
        f"{core['cfg']:g}) and Euler sampler; {core['held_out']['clips']} samples per step count, "
        f"{core['held_out']['clips'] // DIGITS} per digit, "
        "decoded by Griffin-Lim and scored as above (real clips "
        f"{core['real']['accuracy']:.3f})" + (f". Plugin network: {plugin['training']}" if plugin["training"] else "")
        + ". Training-step and sampling times were measured in this benchmark, one after the other on the same "
        "machine; network seconds leave out Griffin-Lim. One training seed per network and one sampling seed: a "
        f"clip is {1 / core['held_out']['clips']:.4f} of accuracy.", "",
        "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads),
        row("core FlowTransformer", core), row("plugin conv U-Net", plugin), ""])


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
    digits = 3 if d["clips"] < 1000 else 4  # accuracy to the clip
    lines = [
        f"Vocoder, `{v['run']}`: Vocos-style, {net['parameters']:,} parameters (ConvNeXt blocks on the log-mel, an "
        f"iSTFT head), mel L1 + multi-resolution STFT loss, no adversarial term, {net['steps']:,} steps in "
        f"{net['train_seconds'] / 60:.1f} min" + (f"; {v['training']}" if v["training"] else "")
        + f". Real clips through the log-mel and back: {d['clips']:,} held-out spoken digits (14 unheard voices) and "
        f"{n['clips']} test notes; the goal is a lower LSD and a higher digit accuracy than Griffin-Lim (64 "
        "iterations). Command: `" + v["command"] + "`.", "",
        "| mel -> waveform | digits LSD | digits mel L1 | digit accuracy | classifier FD | notes LSD | notes mel L1 "
        "| pitch accuracy | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| real clips | - | - | {d['real']['accuracy']:.{digits}f} | 0 | - | - "
        f"| {n['real']['pitch_accuracy']:.3f} | - |"]
    for name, label in (("griffin_lim", "Griffin-Lim, 64 iterations"), ("vocoder", "trained vocoder")):
        a, b = d[name], n[name]
        lines.append(f"| {label} | {a['lsd']:.3f} | {a['mel_l1']:.3f} | {a['accuracy']:.{digits}f} "
                     f"| {a['classifier_fd']:.2f} | {b['lsd']:.3f} | {b['mel_l1']:.3f} | {b['pitch_accuracy']:.3f} "
                     f"| {a['seconds']:.1f} |")
    for name, label in (("griffin_lim", "Griffin-Lim"), ("vocoder", "trained vocoder")):
        a = d.get(f"{name}_tokens")
        if a is not None:
            lines.append(f"| {label}, through the modality (frames rounded up to whole tokens, as samples decode) "
                         f"| {a['lsd']:.3f} | {a['mel_l1']:.3f} | {a['accuracy']:.{digits}f} "
                         f"| {a['classifier_fd']:.2f} | - | - | - | - |")
    if "misses" in d:
        m = d["misses"]
        both = sorted(set(m["griffin_lim"]["clips"]) & set(m["vocoder"]["clips"]))
        same = "the same clips as the real ones" if m["griffin_lim"]["clips"] == m["real"]["clips"] else "other clips"
        lines += ["", f"Held-out clips the classifier misses: real {len(m['real']['clips'])}, Griffin-Lim "
                  f"{len(m['griffin_lim']['clips'])}, trained vocoder {len(m['vocoder']['clips'])} ({len(both)} missed "
                  "by both). By voice: " + "; ".join(
                      f"{label} " + (", ".join(f"{v} {k}" for v, k in sorted(m[name]["by_voice"].items())) or "none")
                      for name, label in (("real", "real"), ("griffin_lim", "Griffin-Lim"),
                                          ("vocoder", "vocoder"))) + f". Griffin-Lim's misses are {same}."]
    g, o = d["griffin_lim"], d["vocoder"]
    accuracy = ("met" if o["accuracy"] > g["accuracy"] else "not met") + (
        f" at the clips' exact length ({o['accuracy']:.{digits}f} against {g['accuracy']:.{digits}f} over "
        f"{d['clips']:,} clips")
    if "misses" in d:
        test = mcnemar(d["misses"]["vocoder"]["clips"], d["misses"]["griffin_lim"]["clips"])
        accuracy += (f": {test['first_only_right']} clips only the vocoder gets right, {test['second_only_right']} "
                     f"only Griffin-Lim; exact McNemar p = {test['p']:.2g}")
    accuracy += ")" + (f", through the modality {d['vocoder_tokens']['accuracy']:.{digits}f} against "
                       f"{d['griffin_lim_tokens']['accuracy']:.{digits}f}" if "vocoder_tokens" in d else "")
    lines += ["", "Goal: LSD " + ("met" if o["lsd"] < g["lsd"] else "not met") + f" ({o['lsd']:.3f} against "
              f"{g['lsd']:.3f}); digit accuracy " + accuracy + "."]
    return "\n".join(lines + [""])


def mcnemar(first_missed: list[int], second_missed: list[int]) -> dict:
    """The exact McNemar test of two decoders scored on the same clips, from the clips each gets wrong:
    under equal accuracy the clips that only one of them gets right split evenly (a binomial test)."""
    a, b = set(first_missed), set(second_missed)
    first_only, second_only = len(b - a), len(a - b)  # right by the first alone, by the second alone
    n = first_only + second_only
    p = binomtest(min(first_only, second_only), n, 0.5).pvalue if n else 1.0
    return {"first_only_right": first_only, "second_only_right": second_only, "p": float(p)}


def vae_md(v: dict, voc: dict | None) -> str:
    lines = [
        f"Mel KL-VAE, run `{v['run']}` (examples/configs/audio_vae.yaml: latent {v['latent']['shape']} per second, "
        f"{v['parameters']:,} parameters)" + (f"; {v['training']}" if v["training"] else "")
        + f". Its reconstructions of the {v['clips']:,} held-out spoken digits (normalised mel L1 "
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
