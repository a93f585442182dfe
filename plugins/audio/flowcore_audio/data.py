"""Audio datasets that need no download. Items are ``{"audio": waveform [T] float32 in [-1, 1], "label": int}``.

| name          | source                                     | size (defaults)              | label (option)     |
| spoken_digits | "zero".."nine" spoken by espeak-ng         | 70 voices x 2 takes x 10     | the digit          |
| notes         | General MIDI notes rendered by fluidsynth  | 6 programs x 25 pitches x 3  | pitch, instrument, |
|               |                                            | velocities (x3 with chords)  | velocity, chord    |
| chorales      | Bach chorales (music21 corpus), fluidsynth | 60 chorales x 4 excerpts     | key, instrument    |
| sonic_pi      | Debian sonic-pi-samples: real recordings   | 166 files -> ~350 1 s clips  | category           |

Splits: spoken_digits by voice (49/7/14 voices: val and test hear new speakers); notes 80/10/10 %
of the items (seeded); chorales 80/10/10 % of the chorales; sonic_pi by file (crc32 of the name).

Generated sets are rendered once, from the options and the seed alone, into
``<cache>/audio/<name>-<key>.npz`` (:func:`flowcore.files.cache_dir`; ``<key>`` hashes
:data:`VERSION` and every option that changes the audio) and read from there afterwards.
Clips have one length (option ``duration``) and are held as 16-bit integers, turned into
float32 one item at a time. A missing Debian tool is a :class:`~flowcore.errors.DataError`
naming the package to install. Every factory takes ``split``, ``sample_rate``, ``limit``
(first n items of the split) and ``seed``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import cache_dir
from flowcore.splits import SPLITS, keyed_split, permuted_split, select
from flowcore_audio import codec
from flowcore_audio.options import SONIC_PI_ROOT

#: bump when the generated audio changes for the same options
VERSION = "2"
SAMPLE_RATE = 16000
#: the 80/10/10 % seeded split of items (or of chorales)
TENTHS = {"train": None, "val": 0.1, "test": 0.1}
INSTALL = "install the Debian package {0} (sudo apt-get install {0}; `make setup` does it when run as root)"

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: the 24 keys: index = tonic pitch class + 12 for minor
KEYS = tuple(f"{n} major" for n in NOTE_NAMES) + tuple(f"{n} minor" for n in NOTE_NAMES)
#: names of the General MIDI programs the defaults use (others are called "program N")
GM_NAMES = {0: "acoustic grand piano", 4: "electric piano", 16: "drawbar organ", 19: "church organ",
            20: "reed organ", 24: "nylon guitar", 25: "steel guitar", 32: "acoustic bass", 40: "violin",
            42: "cello", 48: "string ensemble", 52: "choir aahs", 56: "trumpet", 60: "french horn", 68: "oboe",
            71: "clarinet", 73: "flute", 79: "ocarina"}


def note_name(midi: int) -> str:
    """60 -> "C4"."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def program_name(program: int) -> str:
    return GM_NAMES.get(program, f"program {program}")


# ----------------------------------------------------------------------------- the dataset


class Clips(Dataset):
    """Fixed-length clips held as int16 ``pcm [N, T]``, one label array chosen among ``info``.

    ``info`` keeps every per-clip fact the generator recorded (pitch, instrument, voice, ...)
    as arrays ``[N]``, so metrics can look up what an item was made from; ``classes`` names the
    values of the chosen label.
    """

    def __init__(self, pcm: np.ndarray, info: dict[str, np.ndarray], label: str, classes: Sequence[str],
                 sample_rate: int):
        if label not in info:
            raise DataError(f"label {label!r} is not recorded here; choose one of {sorted(info)}")
        self.pcm, self.info, self.label = pcm, info, label
        self.labels = info[label].astype(np.int64)
        self.classes = tuple(classes)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.pcm)

    def __getitem__(self, i: int) -> dict:
        audio = torch.from_numpy(self.pcm[i].astype(np.float32) / 32768.0)
        return {"audio": audio, "label": int(self.labels[i])}


def _subset(arrays: dict[str, np.ndarray], idx: np.ndarray, limit: int | None) -> tuple[np.ndarray, dict]:
    idx = np.sort(idx)
    if limit is not None:
        idx = idx[: int(limit)]
    return arrays["pcm"][idx], {k: v[idx] for k, v in arrays.items() if k != "pcm"}


def to_pcm(clips: np.ndarray) -> np.ndarray:
    """float [..., T] in [-1, 1] -> int16 (clipped)."""
    return np.clip(np.round(clips * 32767.0), -32768, 32767).astype(np.int16)


_memory: dict[str, dict[str, np.ndarray]] = {}


def cached(name: str, params: dict, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build()``'s arrays, kept in ``<cache>/audio/<name>-<key>.npz``; ``key`` hashes VERSION and ``params``."""
    from flowcore.io import atomic_path

    text = json.dumps({"version": VERSION, **params}, sort_keys=True)
    path = cache_dir("audio", f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.npz")
    if str(path) in _memory:
        return _memory[str(path)]
    arrays = None
    if path.exists():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError):  # an unreadable cache file is simply made again
            arrays = None
    if arrays is None:
        arrays = build()
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    _memory[str(path)] = arrays
    return arrays


# ----------------------------------------------------------------------------- shared audio helpers


def require(tool: str, package: str) -> str:
    """The path of the program ``tool``, or a DataError saying which Debian package has it."""
    found = shutil.which(tool)
    if found is None:
        raise DataError(f"{tool} not found: {INSTALL.format(package)}")
    return found


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave [T]`` from ``rate`` to ``target`` Hz, as the codec resamples files."""
    return codec.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, target).numpy()


def fit_length(clip: np.ndarray, n: int, centre: bool = True) -> np.ndarray:
    """``clip [T]`` padded with silence (centred, or at the end) or cut to ``n`` samples.

    A cut ends in a 10 ms fade so the clip does not stop on a click.
    """
    if len(clip) >= n:
        out = clip[:n].copy()
        fade = min(n, max(1, n // 100))
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return out
    out = np.zeros(n, dtype=np.float32)
    start = (n - len(clip)) // 2 if centre else 0
    out[start: start + len(clip)] = clip
    return out


def frame_db(wave: np.ndarray, hop: int) -> np.ndarray:
    """RMS level of consecutive ``hop``-sample frames, in dB below the loudest frame."""
    frames = len(wave) // hop
    rms = np.sqrt((wave[: frames * hop].reshape(frames, hop) ** 2).mean(1) + 1e-12)
    return 20 * np.log10(rms / rms.max())


# ----------------------------------------------------------------------------- spoken digits

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: English espeak-ng languages: each take draws one (the accent)
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
#: espeak-ng voice variants (``-v en+<variant>``), the speakers; echo-heavy, robotic and whispered ones left out
VOICES = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky",
    "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "adam", "antonio", "aunty", "belinda", "benjamin", "boris",
    "croak", "david", "ed", "edward", "grandma", "grandpa", "gustave", "iven", "john", "kaukovalta", "linda",
    "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby",
    "steph", "travis", "victor", "zac",
)
#: espeak-ng -s (words per minute) and -p (0..99) ranges each take draws from
SPEEDS = (120, 220)
PITCHES = (20, 80)
#: the voices held out of training: fractions of VOICES, cut from a seeded permutation
VOICE_SPLIT = {"train": None, "val": 0.1, "test": 0.2}
ESPEAK_RATE = 22050
PEAK = 0.9


def voice_split(seed: int = 0) -> dict[str, list[str]]:
    """``{split: [voice variant names]}``: which speakers each split hears (disjoint)."""
    parts = permuted_split(len(VOICES), seed, VOICE_SPLIT)
    return {name: [VOICES[i] for i in np.sort(idx)] for name, idx in parts.items()}


def _espeak(args: list[str], text: str) -> np.ndarray:
    out = subprocess.run([*args, "--stdout", text], capture_output=True, check=False)
    if out.returncode != 0 or not out.stdout:
        raise DataError(f"espeak-ng {' '.join(args[1:])} failed: {out.stderr.decode(errors='replace').strip()}")
    import soundfile

    wave, rate = soundfile.read(io.BytesIO(out.stdout), dtype="float32")
    if rate != ESPEAK_RATE:
        raise DataError(f"espeak-ng wrote {rate} Hz audio, expected {ESPEAK_RATE}")
    return wave


def _word_spans(db: np.ndarray, count: int, hop_s: float, gap_s: float = 0.25,
                floor_db: float = -40.0) -> list[tuple[int, int]] | None:
    """Frame spans of ``count`` sounds separated by pauses of at least ``gap_s``, or None."""
    loud = np.flatnonzero(db > floor_db)
    if len(loud) == 0:
        return None
    breaks = np.flatnonzero(np.diff(loud) > gap_s / hop_s)
    starts = np.r_[loud[0], loud[breaks + 1]]
    ends = np.r_[loud[breaks], loud[-1]] + 1
    return list(zip(starts, ends)) if len(starts) == count else None


def _speak_take(espeak: str, voice: str, accent: str, speed: int, pitch: int, rate: int) -> list[np.ndarray]:
    """The ten digits in one voice, trimmed of silence, at ``rate`` Hz, each peak-normalised."""
    args = [espeak, "-v", f"{accent}+{voice}", "-s", str(speed), "-p", str(pitch)]
    # one call speaks all ten words between long breaks (a call costs more than the speech);
    # if the pauses cannot be found, each word gets its own call
    wave = resample(_espeak([*args, "-m"], "<speak>" + '<break time="700ms"/>'.join(DIGITS) + "</speak>"),
                    ESPEAK_RATE, rate)
    hop = rate // 100
    spans = _word_spans(frame_db(wave, hop), len(DIGITS), 0.01)
    if spans is not None:
        words = [wave[max(0, (a - 2) * hop): (b + 2) * hop] for a, b in spans]
    else:
        words = []
        for word in DIGITS:
            w = resample(_espeak(args, word), ESPEAK_RATE, rate)
            loud = np.flatnonzero(frame_db(w, hop) > -40.0)
            if len(loud) == 0:
                raise DataError(f"espeak-ng {' '.join(args[1:])} said {word!r} as silence")
            words.append(w[max(0, (loud[0] - 2) * hop): (loud[-1] + 3) * hop])
    return [w * (PEAK / max(float(np.abs(w).max()), 1e-6)) for w in words]


def _spoken_digit_arrays(takes: int, duration: float, sample_rate: int, seed: int) -> dict[str, np.ndarray]:
    espeak = require("espeak-ng", "espeak-ng")
    n = int(round(duration * sample_rate))
    jobs = []
    for v, voice in enumerate(VOICES):
        rng = np.random.default_rng([seed, v])
        for take in range(takes):
            accent = int(rng.integers(len(ACCENTS)))
            jobs.append((v, take, accent, int(rng.integers(SPEEDS[0], SPEEDS[1] + 1)),
                         int(rng.integers(PITCHES[0], PITCHES[1] + 1))))
    # subprocess calls release the GIL: threads keep every core busy
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1) * 2) as pool:
        spoken = list(pool.map(lambda j: _speak_take(espeak, VOICES[j[0]], ACCENTS[j[2]], j[3], j[4], sample_rate),
                               jobs))
    pcm = np.stack([to_pcm(fit_length(w, n)) for words in spoken for w in words])
    rows = np.array([j for j in jobs for _ in DIGITS], dtype=np.int64)
    return {"pcm": pcm, "digit": np.tile(np.arange(len(DIGITS)), len(jobs)), "voice": rows[:, 0],
            "take": rows[:, 1], "accent": rows[:, 2], "speed": rows[:, 3], "pitch": rows[:, 4]}


def spoken_digits(split: str = "train", takes: int = 2, duration: float = 1.0, sample_rate: int = SAMPLE_RATE,
                  limit: int | None = None, seed: int = 0) -> Clips:
    """The digits zero..nine spoken by espeak-ng; label = the digit.

    Each of the 70 :data:`VOICES` (espeak-ng variants) speaks all ten digits ``takes`` times,
    each take with its own accent (:data:`ACCENTS`), speed and pitch drawn from ``seed``.
    Words are trimmed of silence, peak-normalised to 0.9 and centred in ``duration`` seconds.
    The split is by voice (:func:`voice_split`): val and test hear speakers training never heard.
    """
    names = select(voice_split(seed), split)
    arrays = cached("spoken_digits", {"takes": int(takes), "duration": float(duration),
                                      "sample_rate": int(sample_rate), "seed": int(seed)},
                    lambda: _spoken_digit_arrays(takes, duration, sample_rate, seed))
    wanted = [VOICES.index(v) for v in names]
    pcm, info = _subset(arrays, np.flatnonzero(np.isin(arrays["voice"], wanted)), limit)
    return Clips(pcm, info, "digit", DIGITS, sample_rate)


# ----------------------------------------------------------------------------- MIDI and fluidsynth

#: where Debian's soundfont packages put a General MIDI soundfont, in order of preference
SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")
SOUNDFONT_PACKAGE = "timgm6mb-soundfont"
#: fluidsynth's master gain (-g): TimGM6mb is quiet; chords at velocity 127 stay below full scale
GAIN = 1.2


def find_soundfont(path: str | None = None) -> Path:
    """The given soundfont, else the first of :data:`SOUNDFONTS` that is installed."""
    if path is not None:
        if not Path(path).is_file():
            raise DataError(f"soundfont {path} not found")
        return Path(path)
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise DataError(f"no General MIDI soundfont in {', '.join(SOUNDFONTS)}: {INSTALL.format(SOUNDFONT_PACKAGE)}")


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: Sequence[tuple[float, bytes]], ticks_per_second: int = 1000) -> bytes:
    """A one-track Standard MIDI File from ``(time in seconds, message bytes)`` events.

    Tempo 60 bpm with ``ticks_per_second`` ticks per beat, so ticks count milliseconds.
    Events at one time keep their order, except that note-offs go first (a repeated pitch
    ends before it starts again).
    """
    timed = sorted(((round(t * ticks_per_second), 0 if msg[0] & 0xF0 == 0x80 else 1, k, msg)
                    for k, (t, msg) in enumerate(events)))
    track = bytearray(b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big"))
    now = 0
    for tick, _, _, msg in timed:
        track += _vlq(tick - now) + msg
        now = tick
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_second) + b"MTrk" + struct.pack(">I", len(track)) + track


def note_events(start: float, end: float, pitches: Sequence[int], velocity: int, channel: int = 0) -> list:
    on, off = 0x90 | channel, 0x80 | channel
    return [e for p in pitches for e in ((start, bytes([on, p, velocity])), (end, bytes([off, p, 0])))]


def program_event(time: float, program: int, channel: int = 0) -> tuple[float, bytes]:
    return (time, bytes([0xC0 | channel, program]))


def render_midi(midi: bytes, sample_rate: int = SAMPLE_RATE, soundfont: str | None = None,
                gain: float = GAIN) -> np.ndarray:
    """Render a MIDI file's bytes with fluidsynth (reverb and chorus off): mono float32 [T].

    fluidsynth renders stereo; the two channels are averaged (mono policy: the mean).
    """
    fluidsynth = require("fluidsynth", "fluidsynth")
    font = find_soundfont(soundfont)
    import soundfile

    with tempfile.TemporaryDirectory(prefix="flowcore-audio-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        out = subprocess.run([fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-O", "float",
                              "-T", "wav", "-r", str(sample_rate), "-F", str(wav), str(font), str(mid)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0 or not wav.exists():
            raise DataError(f"fluidsynth failed to render with {font}: {out.stderr.strip()}")
        wave, _ = soundfile.read(wav, dtype="float32", always_2d=True)
    return wave.mean(1)


def render_slots(slots: Sequence[list[tuple[float, bytes]]], length: float, sample_rate: int = SAMPLE_RATE,
                 soundfont: str | None = None, gap: float = 1.5) -> np.ndarray:
    """Render many short pieces in one fluidsynth call: ``[len(slots), length * sample_rate]``.

    Each slot's events are timed from 0; slots are laid out ``length + gap`` seconds apart
    (the gap lets release tails die away) and cut out again.
    """
    lead, step, n = 0.5, length + gap, int(round(length * sample_rate))
    events = [(lead + k * step + t, msg) for k, slot in enumerate(slots) for t, msg in slot]
    wave = render_midi(midi_file(events), sample_rate, soundfont)
    wave = np.pad(wave, (0, max(0, int(round((lead + len(slots) * step) * sample_rate)) - len(wave))))
    starts = [int(round((lead + k * step) * sample_rate)) for k in range(len(slots))]
    return np.stack([wave[s: s + n] for s in starts])


# ----------------------------------------------------------------------------- notes

#: piano, reed organ, nylon guitar, string ensemble, trumpet, flute (the church organ sounds an octave low)
PROGRAMS = (0, 20, 24, 48, 56, 73)
VELOCITIES = (60, 90, 120)
CHORDS = ("note", "major triad", "minor triad")
CHORD_STEPS = ((0,), (0, 4, 7), (0, 3, 7))


def _note_arrays(programs: tuple[int, ...], low: int, high: int, velocities: tuple[int, ...], chords: bool,
                 duration: float, hold: float, sample_rate: int, soundfont: str | None) -> dict[str, np.ndarray]:
    kinds = range(len(CHORDS) if chords else 1)
    rows = [(i, p, v, c) for i in range(len(programs)) for p in range(low, high + 1)
            for v in range(len(velocities)) for c in kinds]
    slots = [[program_event(0.0, programs[i]),
              *note_events(0.0, hold * duration, [p + s for s in CHORD_STEPS[c] if p + s < 128], velocities[v])]
             for i, p, v, c in rows]
    clips = render_slots(slots, duration, sample_rate, soundfont)
    table = np.array(rows, dtype=np.int64)
    return {"pcm": to_pcm(clips), "instrument": table[:, 0], "midi": table[:, 1], "pitch": table[:, 1] - low,
            "velocity": table[:, 2], "chord": table[:, 3]}


def notes(split: str = "train", programs: Sequence[int] = PROGRAMS, low: int = 48, high: int = 72,
          velocities: Sequence[int] = VELOCITIES, chords: bool = False, duration: float = 1.0, hold: float = 0.6,
          label: str = "pitch", soundfont: str | None = None, sample_rate: int = SAMPLE_RATE,
          limit: int | None = None, seed: int = 0) -> Clips:
    """Single notes (and, with ``chords``, major and minor triads on each root) rendered by fluidsynth.

    Every General MIDI ``program`` plays every MIDI pitch ``low..high`` at every velocity,
    held for ``hold`` of ``duration`` seconds, the rest its release. ``label`` picks the
    item's label: ``pitch`` (index of the (root) pitch in the range), ``instrument`` (index
    in ``programs``), ``velocity`` (index in ``velocities``) or ``chord`` (note / major /
    minor). ``info["midi"]`` holds the MIDI pitch. Items are split 80/10/10 % by ``seed``.
    """
    if not 0 <= low <= high <= 127:
        raise DataError(f"notes: need 0 <= low <= high <= 127, got low={low}, high={high}")
    programs, velocities = tuple(int(p) for p in programs), tuple(int(v) for v in velocities)
    params = {"programs": programs, "low": low, "high": high, "velocities": velocities, "chords": chords,
              "duration": float(duration), "hold": float(hold), "sample_rate": int(sample_rate),
              "soundfont": str(find_soundfont(soundfont))}
    arrays = cached("notes", params, lambda: _note_arrays(programs, low, high, velocities, chords, duration, hold,
                                                          sample_rate, soundfont))
    pcm, info = _subset(arrays, select(permuted_split(len(arrays["pcm"]), seed, TENTHS), split), limit)
    classes = {"pitch": [note_name(p) for p in range(low, high + 1)],
               "instrument": [program_name(p) for p in programs],
               "velocity": [str(v) for v in velocities], "chord": CHORDS[: 3 if chords else 1]}
    if label not in classes:
        raise DataError(f"notes: label {label!r}; choose one of {sorted(classes)}")
    return Clips(pcm, info, label, classes[label], sample_rate)


# ----------------------------------------------------------------------------- chorales

#: church organ, choir aahs, string ensemble, acoustic grand piano
CHORALE_PROGRAMS = (19, 52, 48, 0)


def chorale_paths() -> list[Path]:
    """The Bach chorale scores of the music21 corpus (MusicXML; analyses left out), sorted."""
    try:
        from music21 import corpus
    except ImportError:
        raise DataError("chorales need the Python package music21: pip install music21 "
                        "(flowcore-audio declares it, so reinstalling the plugin also works)") from None
    return sorted(Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in (".mxl", ".xml"))


def score_notes(path: Path | str, abc: bool = False) -> np.ndarray:
    """Notes of a score as ``[N, 3]`` floats: onset and length in quarter notes, MIDI pitch (ties merged).

    ``path``: a score file, or with ``abc`` the text of one ABC tune."""
    from music21 import converter

    score = (converter.parse(path, format="abc") if abc else converter.parse(str(path))).stripTies()
    rows = [(float(n.offset), float(n.quarterLength), p.midi)
            for n in score.flatten().notes for p in n.pitches if float(n.quarterLength) > 0]
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, 3)


def pitch_class_durations(notes: np.ndarray) -> np.ndarray:
    """``[N, 3]`` (onset, length, MIDI pitch) -> total length per pitch class ``[12]``."""
    return np.bincount(notes[:, 2].astype(np.int64) % 12, weights=notes[:, 1], minlength=12)


def excerpt(notes: np.ndarray, start: float, length: float) -> np.ndarray:
    """The notes sounding in ``[start, start + length)`` quarters, clipped to it, onsets from 0."""
    end = notes[:, 0] + notes[:, 1]
    keep = (notes[:, 0] < start + length) & (end > start)
    on = np.maximum(notes[keep, 0], start)
    off = np.minimum(end[keep], start + length)
    return np.stack([on - start, off - on, notes[keep, 2]], axis=1)


def _parse_all(chosen: list, abc: bool = False) -> list[np.ndarray]:
    """:func:`score_notes` of each; parsing is the slow part (0.1-0.3 s a score) and holds the GIL: a process pool."""
    from concurrent.futures import ProcessPoolExecutor

    workers = min(len(chosen), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(functools.partial(score_notes, abc=abc), chosen))
    return [score_notes(p, abc) for p in chosen]


def _chorale_arrays(count: int, excerpts: int, duration: float, bpm: float, programs: tuple[int, ...],
                    transpose: bool, sample_rate: int, soundfont: str | None, seed: int) -> dict[str, np.ndarray]:
    paths = chorale_paths()
    if count > len(paths):
        raise DataError(f"chorales: count {count} > the {len(paths)} chorales of the music21 corpus")
    chosen = [paths[i] for i in np.sort(np.random.default_rng(seed).permutation(len(paths))[:count])]
    return _excerpt_arrays(_parse_all(chosen), "chorale", excerpts, duration, bpm, programs, transpose, sample_rate,
                           soundfont, seed)


def _excerpt_arrays(scores: list[np.ndarray], piece: str, excerpts: int, duration: float, bpm: float,
                    programs: tuple[int, ...], transpose: bool, sample_rate: int, soundfont: str | None,
                    seed: int) -> dict[str, np.ndarray]:
    """``excerpts`` rendered excerpts of each score (notes ``[N, 3]``), with their key; ``piece`` names the
    array of each excerpt's score index."""
    from flowcore_audio.metrics import estimate_key_profile

    quarters = duration * bpm / 60.0
    seconds = 60.0 / bpm
    slots, rows = [], []
    for c, score in enumerate(scores):
        rng = np.random.default_rng([seed, c])
        last = max(0.0, float((score[:, 0] + score[:, 1]).max()) - quarters)
        for e in range(excerpts):
            start = float(np.floor(rng.uniform(0.0, last)))  # on a beat
            part = excerpt(score, start, quarters)
            program = int(rng.integers(len(programs)))
            shift = int(rng.integers(-5, 7)) if transpose else 0
            part[:, 2] = np.clip(part[:, 2] + shift, 0, 127)
            key = estimate_key_profile(pitch_class_durations(part))
            slot = [program_event(0.0, programs[program])]
            for on, length, pitch in part:
                # a 10 ms gap before each note-off lets a repeated pitch sound again
                end = max(on * seconds + 0.005, (on + length) * seconds - 0.01)
                slot += note_events(on * seconds, end, [int(pitch)], 80)
            slots.append(slot)
            rows.append((c, e, program, key, int(start), shift))
    clips = render_slots(slots, duration, sample_rate, soundfont, gap=2.0)
    table = np.array(rows, dtype=np.int64)
    return {"pcm": to_pcm(clips), piece: table[:, 0], "excerpt": table[:, 1], "instrument": table[:, 2],
            "key": table[:, 3], "start": table[:, 4], "transpose": table[:, 5]}


def chorales(split: str = "train", count: int = 60, excerpts: int = 4, duration: float = 4.0, bpm: float = 100.0,
             programs: Sequence[int] = CHORALE_PROGRAMS, transpose: bool = True, label: str = "key",
             soundfont: str | None = None, sample_rate: int = SAMPLE_RATE, limit: int | None = None,
             seed: int = 0) -> Clips:
    """Excerpts of Bach chorales (music21 corpus) rendered by fluidsynth; label = key or instrument.

    ``count`` chorales chosen by ``seed``; from each, ``excerpts`` excerpts of ``duration``
    seconds at ``bpm`` quarter notes a minute, starting on a random beat, all voices played
    by one General MIDI program drawn from ``programs``; with ``transpose`` each excerpt is
    moved by a random interval of -5..+6 semitones (``info["transpose"]``), so that the 24 keys
    are about evenly covered (Bach's chorales keep to few). ``key`` is the excerpt's key (index
    into :data:`KEYS`) by Krumhansl-Kessler profiles on its pitch-class durations
    (:func:`flowcore_audio.metrics.estimate_key_profile`, the profiles music21's
    ``KrumhanslKessler`` analysis uses); ``instrument`` indexes ``programs``. The split is by
    chorale, 80/10/10 % of the chosen ones (at least one each in val and test), so test
    excerpts come from chorales training never heard.
    """
    return _excerpt_clips("chorales", "chorale", _chorale_arrays, split, count, excerpts, duration, bpm, programs,
                          transpose, label, soundfont, sample_rate, limit, seed)


def _excerpt_clips(name: str, piece: str, make: Callable[..., dict[str, np.ndarray]], split: str, count: int,
                   excerpts: int, duration: float, bpm: float, programs: Sequence[int], transpose: bool, label: str,
                   soundfont: str | None, sample_rate: int, limit: int | None, seed: int) -> Clips:
    """The ``split`` of a cached set of rendered excerpts (``make`` builds it), split by ``piece``
    (80/10/10 % of the ``count`` pieces, at least one each in val and test)."""
    if label not in ("key", "instrument"):
        raise DataError(f"{name}: label {label!r}; choose key or instrument")
    programs = tuple(int(p) for p in programs)
    params = {"count": int(count), "excerpts": int(excerpts), "duration": float(duration), "bpm": float(bpm),
              "programs": programs, "transpose": bool(transpose), "sample_rate": int(sample_rate),
              "soundfont": str(find_soundfont(soundfont)), "seed": int(seed)}
    arrays = cached(name, params, lambda: make(count, excerpts, duration, bpm, programs, transpose, sample_rate,
                                               soundfont, seed))
    held = max(1, int(0.1 * count)) if count >= 3 else 0
    parts = permuted_split(count, seed, {"train": None, "val": held, "test": held})
    pcm, info = _subset(arrays, np.flatnonzero(np.isin(arrays[piece], select(parts, split))), limit)
    classes = KEYS if label == "key" else [program_name(p) for p in programs]
    return Clips(pcm, info, label, classes, sample_rate)


# ----------------------------------------------------------------------------- folk songs

#: flute, acoustic grand piano, nylon guitar, violin
FOLK_PROGRAMS = (73, 0, 24, 40)


@functools.lru_cache(maxsize=1)
def folk_tunes() -> tuple[str, ...]:
    """The ABC tunes (one text each) of the music21 corpus's Essen folk song collection, in file
    order; its test files are left out. Read once (2 s)."""
    try:
        from music21 import corpus
    except ImportError:
        raise DataError("folk_songs need the Python package music21: pip install music21 "
                        "(flowcore-audio declares it, so reinstalling the plugin also works)") from None
    files = sorted(Path(p) for p in corpus.getPaths(fileExtensions=("abc",)) if Path(p).parent.name == "essenFolksong"
                   and not Path(p).stem.startswith("test"))
    tunes = []
    for path in files:
        text = path.read_text(encoding="latin-1")
        tunes += ["X:" + t for t in text.split("\nX:")[1:] if "\nK:" in t]
    return tuple(tunes)


def _folk_arrays(count: int, excerpts: int, duration: float, bpm: float, programs: tuple[int, ...],
                 transpose: bool, sample_rate: int, soundfont: str | None, seed: int) -> dict[str, np.ndarray]:
    tunes = folk_tunes()
    if count > len(tunes):
        raise DataError(f"folk_songs: count {count} > the {len(tunes)} Essen folk songs of the music21 corpus")
    chosen = [tunes[i] for i in np.sort(np.random.default_rng(seed).permutation(len(tunes))[:count])]
    scores = _parse_all(chosen, abc=True)
    if any(len(s) == 0 for s in scores):
        raise DataError("folk_songs: a chosen tune holds no notes; choose another seed")
    return _excerpt_arrays(scores, "song", excerpts, duration, bpm, programs, transpose, sample_rate, soundfont, seed)


def folk_songs(split: str = "train", count: int = 120, excerpts: int = 2, duration: float = 4.0,
               bpm: float = 100.0, programs: Sequence[int] = FOLK_PROGRAMS, transpose: bool = True,
               label: str = "key", soundfont: str | None = None, sample_rate: int = SAMPLE_RATE,
               limit: int | None = None, seed: int = 0) -> Clips:
    """Excerpts of folk songs (the Essen collection's ABC tunes in the music21 corpus), rendered by
    fluidsynth; label = key or instrument. As :func:`chorales`, with tunes for chorales: ``count``
    tunes chosen by ``seed``, ``excerpts`` excerpts of each (one melody line, one program each),
    transposed at random, split 80/10/10 % by tune (``info["song"]``)."""
    return _excerpt_clips("folk_songs", "song", _folk_arrays, split, count, excerpts, duration, bpm, programs,
                          transpose, label, soundfont, sample_rate, limit, seed)


# ----------------------------------------------------------------------------- sonic-pi recordings

SONIC_PI_PACKAGE = "sonic-pi-samples"
#: the file-name prefixes of sonic-pi's samples: the category label
SONIC_PI_CLASSES = ("ambi", "bass", "bd", "drum", "elec", "glitch", "guit", "loop", "mehackit", "misc", "perc",
                    "sn", "tabla", "vinyl")
#: split by file: clips of one recording stay together
FILE_SPLIT = {"test": 0.1, "val": 0.1}


def sonic_pi_files(root: str = SONIC_PI_ROOT) -> list[Path]:
    files = sorted(Path(root).glob("*.flac"))
    if not files:
        raise DataError(f"no sonic-pi samples (*.flac) in {root}: {INSTALL.format(SONIC_PI_PACKAGE)}")
    return files


def _sonic_pi_arrays(root: str, duration: float, sample_rate: int, silence_db: float) -> dict[str, np.ndarray]:
    reader = codec.AudioCodec(sample_rate)
    n = int(round(duration * sample_rate))
    pcm, rows = [], []
    for f, path in enumerate(sonic_pi_files(root)):
        wave = reader.read(path).numpy()
        category = path.stem.split("_")[0]
        label = SONIC_PI_CLASSES.index(category) if category in SONIC_PI_CLASSES else SONIC_PI_CLASSES.index("misc")
        for k, start in enumerate(range(0, max(1, len(wave) - n // 2), n)):
            clip = fit_length(wave[start: start + n], n, centre=False)
            rms_db = 10 * np.log10(float((clip ** 2).mean()) + 1e-12)
            if k > 0 and rms_db < silence_db:  # a recording's silent tail adds nothing
                continue
            pcm.append(to_pcm(clip))
            rows.append((f, k, label))
    table = np.array(rows, dtype=np.int64)
    return {"pcm": np.stack(pcm), "recording": table[:, 0], "clip": table[:, 1], "category": table[:, 2]}


def sonic_pi(split: str = "train", duration: float = 1.0, root: str = SONIC_PI_ROOT, silence_db: float = -50.0,
             sample_rate: int = SAMPLE_RATE, limit: int | None = None, seed: int = 0) -> Clips:
    """sonic-pi's real recordings (Debian sonic-pi-samples) cut into ``duration``-second clips.

    Files are read by the codec (averaged to mono, resampled); each file gives consecutive clips (the
    last one, if at least half long, padded with silence), its later clips dropped when
    quieter than ``silence_db`` dBFS (RMS). Label = the category, the file name's prefix
    (:data:`SONIC_PI_CLASSES`). The split is by file (crc32 of seed and file name: 10 % val,
    10 % test), so a recording's clips never straddle splits.
    """
    files = sonic_pi_files(root)
    arrays = cached("sonic_pi", {"root": str(Path(root).resolve()), "files": len(files),
                                 "duration": float(duration), "sample_rate": int(sample_rate),
                                 "silence_db": float(silence_db)},
                    lambda: _sonic_pi_arrays(root, duration, sample_rate, silence_db))
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    in_split = np.array([keyed_split(p.name, FILE_SPLIT, seed=seed) == split for p in files])
    pcm, info = _subset(arrays, np.flatnonzero(in_split[arrays["recording"]]), limit)
    return Clips(pcm, info, "category", SONIC_PI_CLASSES, sample_rate)


@functools.lru_cache(maxsize=None)
def tool_missing(dataset: str) -> str | None:
    """Why ``dataset`` cannot be made here (a missing Debian package or Python package), or None."""
    needs = {"spoken_digits": [("espeak-ng", "espeak-ng")],
             "notes": [("fluidsynth", "fluidsynth")],
             "chorales": [("fluidsynth", "fluidsynth")],
             "folk_songs": [("fluidsynth", "fluidsynth")],
             "sonic_pi": []}
    try:
        for tool, package in needs[dataset]:
            require(tool, package)
        if dataset in ("notes", "chorales", "folk_songs"):
            find_soundfont()
        if dataset == "chorales":
            chorale_paths()
        if dataset == "folk_songs" and not folk_tunes():
            raise DataError("folk_songs: the music21 corpus here has no Essen folk songs")
        if dataset == "sonic_pi":
            sonic_pi_files()
    except DataError as exc:
        return str(exc)
    return None
