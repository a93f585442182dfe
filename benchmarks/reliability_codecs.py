"""reliability_codecs: what each codec says about bad files, counted.

Two sets of inputs per codec (toy2d points CSV, label text, image, protein, tabular CSV):

- corpus: the files of tests/data/bad/<modality>/ that the codec reads (one per problem a new
  user met: a float TIFF named .png, a 16-bit RGB PNG, a 400-digit integer, an unknown residue...),
  plus a 100-megapixel PNG header made here (it is not committed);
- fuzz: flowcore.testing.damaged_files of a file the codec wrote (an empty file, random bytes,
  the file cut at random lengths, bytes overwritten), seed 0, 40 per written format.

Each input is read (``read_all``, then the modality's ``validate``) and sorted into one outcome:

- ``clear error``: a DataError in one line naming the file;
- ``clear warning``: samples read, with warnings each in one line naming the file;
- ``read``: valid samples, no warning (a damaged file can still be a valid one: a CSV cut after a row);
- ``unclear``: a DataError or warning that does not name the file, or spans lines;
- ``crash``: any other exception.

Run:  .venv/bin/python benchmarks/reliability_codecs.py    (writes benchmarks/results/reliability_codecs.json;
      about 20 s on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)

from flowcore.builtins.label import Label
from flowcore.builtins.toy2d import Toy2d
from flowcore.errors import DataError
from flowcore.modality import Modality
from flowcore.testing import damaged_files

ROOT = Path(__file__).resolve().parent
BAD = ROOT.parent / "tests" / "data" / "bad"
FUZZ_PER_FORMAT = 40
#: the table the tabular codec's schema is fitted on (the bad files share its columns)
GOOD_TABLE = "age,income,city\n" + "".join(f"{20 + 3 * i},{30000 + 2500.5 * i},{('Oslo', 'Bergen')[i % 2]}\n"
                                           for i in range(12))


def outcome(modality: Modality, path: Path) -> tuple[str, str]:
    """(outcome, the message a user reads) of reading ``path`` with ``modality``'s codec."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, sample in enumerate(modality.codec.read_all(path)):
                modality.validate(sample, f"{path} sample {i}")
        except DataError as exc:
            message = str(exc)
            clear = path.name in message and "\n" not in message
            return ("clear error" if clear else "unclear"), message
        except Exception as exc:  # what the codec must never let out
            return "crash", f"{type(exc).__name__}: {exc}"
    ours = [str(w.message) for w in caught if not str(w.filename).startswith(sys.prefix)]
    if not ours:
        return "read", ""
    clear = all(path.name in m and "\n" not in m for m in ours)
    return ("clear warning" if clear else "unclear"), " | ".join(ours)


def png_header(width: int, height: int) -> bytes:
    """A PNG signature, IHDR and an empty IDAT: a huge image's header with no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def codecs(work: Path) -> dict[str, dict[str, Any]]:
    """{codec: {modality, corpus files, samples to write (with the suffixes to write them as)}}."""
    from flowcore_audio.modality import Audio
    from flowcore_image.modality import Image
    from flowcore_protein import geometry
    from flowcore_protein.modality import Protein
    from flowcore_tabular.modality import Tabular

    (work / "good.csv").write_text(GOOD_TABLE)
    huge = work / "hundred_megapixels.png"
    huge.write_bytes(png_header(10_000, 10_000))
    helix = geometry.frames_from_backbone(
        geometry.build_backbone(torch.full((10,), -63.0), torch.full((10,), -43.0)).float())
    g = torch.Generator().manual_seed(0)
    table = Tabular(csv=str(work / "good.csv"))
    return {
        "toy2d points CSV": {"modality": Toy2d(), "corpus": sorted((BAD / "toy2d").glob("*.csv")),
                             "samples": [torch.tensor([0.5, -1.25]), torch.tensor([3.0, 4.0])], "suffixes": [".csv"]},
        "label text": {"modality": Label(classes=["cat", "dog", "emu"]), "corpus": [], "samples": [1],
                       "suffixes": [".txt"]},
        "image (Pillow)": {"modality": Image(channels=3), "corpus": [*sorted((BAD / "image").glob("*")), huge],
                           "samples": [torch.rand(3, 12, 10, generator=g) * 2 - 1],
                           "suffixes": [".png", ".jpg", ".webp"]},
        "protein (PDB)": {"modality": Protein(), "corpus": sorted((BAD / "protein").glob("*.pdb")),
                          "samples": [helix], "suffixes": [".pdb"]},
        "audio (soundfile)": {"modality": Audio(), "corpus": [],
                              "samples": [0.5 * torch.sin(torch.arange(4000) * 0.05)], "suffixes": [".wav", ".flac",
                                                                                                    ".ogg"]},
        "tabular CSV": {"modality": table, "corpus": sorted((BAD / "tabular").glob("*.csv")),
                        "samples": table.train_rows, "suffixes": [".csv"]},
    }


def run_codec(name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    modality = spec["modality"]
    corpus = []
    for path in spec["corpus"]:
        kind, message = outcome(modality, path)
        shown = path.relative_to(BAD.parents[2]) if path.is_relative_to(BAD) else path.name
        corpus.append({"file": str(shown), "outcome": kind, "message": message.replace(str(path.parent) + "/", "")})
    fuzz: Counter = Counter()
    crashes = []
    for suffix in spec["suffixes"]:
        good = work / name.split()[0] / f"real{suffix}"
        good.parent.mkdir(parents=True, exist_ok=True)
        if len(spec["samples"]) > 1 or name.startswith("tabular"):
            written = modality.codec.write_all(spec["samples"], good.parent, "real")
            good = written[0]
        else:
            modality.codec.write(spec["samples"][0], good)
        for path in damaged_files(good, work / name.split()[0] / f"damaged{suffix}", FUZZ_PER_FORMAT, seed=0):
            kind, message = outcome(modality, path)
            fuzz[kind] += 1
            if kind in ("crash", "unclear"):
                crashes.append(f"{path.name}: {message[:200]}")
    corpus_counts = Counter(c["outcome"] for c in corpus)
    return {
        "corpus": {"tried": len(corpus), "clear": corpus_counts["clear error"] + corpus_counts["clear warning"],
                   "clear_errors": corpus_counts["clear error"], "clear_warnings": corpus_counts["clear warning"],
                   "unclear": corpus_counts["unclear"], "crashes": corpus_counts["crash"],
                   "read_silently": corpus_counts["read"], "cases": corpus},
        "fuzz": {"tried": sum(fuzz.values()), "clear_errors": fuzz["clear error"],
                 "read_valid": fuzz["read"] + fuzz["clear warning"], "unclear": fuzz["unclear"],
                 "crashes": fuzz["crash"], "problems": crashes},
    }


def write_results_md(payload: dict[str, Any], path: Path) -> None:
    rows = []
    for name, r in payload["codecs"].items():
        c, f = r["corpus"], r["fuzz"]
        corpus = f"{c['clear']}/{c['tried']}" if c["tried"] else "-"
        rows.append(f"| {name} | {corpus} | {f['tried']} | {f['clear_errors']} | {f['read_valid']} | "
                    f"{f['unclear'] + c['unclear']} | {f['crashes'] + c['crashes']} |")
    replace_section(path, "reliability_codecs", "\n".join([
        "## reliability_codecs", "",
        f"`{payload['command']}` at {payload['commit']} ({payload['wall_seconds']} s): every codec reads the bad-file "
        f"corpus of tests/data/bad/ and {payload['fuzz_per_format']} damaged copies (empty, random bytes, cut short, "
        "bytes overwritten) of each format it writes. A clear outcome is a DataError (or a warning) naming the file; "
        "a damaged copy that is still a valid file may read back.", "",
        "| codec | corpus: clear / tried | damaged files | clear errors | read back valid | unclear | crashes |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reliability_codecs.json")
    parser.add_argument("--results-md", type=Path, default=ROOT / "RESULTS.md",
                        help="the Markdown file whose '## reliability_codecs' section is replaced")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall = time.perf_counter()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    with tempfile.TemporaryDirectory(prefix="flowcore-codecs-") as tmp:
        work = Path(tmp)
        results = {name: run_codec(name, spec, work) for name, spec in codecs(work).items()}
    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "commit": commit, "wall_seconds": round(time.perf_counter() - wall, 1),
        "fuzz_per_format": FUZZ_PER_FORMAT, "codecs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    write_results_md(payload, args.results_md)
    for name, r in results.items():
        c, f = r["corpus"], r["fuzz"]
        print(f"{name:18s} corpus {c['clear']}/{c['tried']} clear ({c['clear_errors']} errors, "
              f"{c['clear_warnings']} warnings), {c['crashes']} crashes; fuzz {f['tried']} tried: "
              f"{f['clear_errors']} clear errors, {f['read_valid']} read valid, {f['unclear']} unclear, "
              f"{f['crashes']} crashes")
        for problem in f["problems"]:
            print(f"    {problem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
