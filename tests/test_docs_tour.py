"""The tour runs as written: every ```sh and ```python block of the tour pages, in page order, on small
settings.

Each page runs in its own directory holding a link to `examples/`, so the `runs/...` and `outputs/...`
the docs name land there. Shell lines go through `flowcore.cli.main` in this process; a `train` or
`reflow` gets `--set` overrides after the doc's own (a few dozen steps, a few hundred samples). Runs and
files a page uses without making them (a run trained on another page, an input file) are stand-ins
made first. A block preceded by `<!-- not run: REASON -->` is only checked: its command lines must
parse with flowcore's argparse, its Python must compile. A `# -> PATH` comment on a command line is a
claim that the command writes PATH; a ```json block of a `run` the page made must have that run's keys.
"""

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from flowcore.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["cli.md", "python.md", "any-to-any.md", "concepts.md"]

FENCE = re.compile(r"(?:<!--\s*not run:(?P<reason>[^>]*?)-->[ \t]*\n)?^```(?P<lang>[\w-]*)[ \t]*\n(?P<code>.*?)^```",
                   re.S | re.M)

SMALL = {  # appended to the doc's own flags: later --set overrides win
    "train": ["--set", "train.steps=30", "--set", "train.checkpoint_every=30", "--set", "sample.count=200",
              "--set", "eval.count=200", "--set", "train.progress_bar=false"],
    "reflow": ["--set", "reflow.pairs=256", "--set", "train.steps=30", "--set", "train.progress_bar=false"],
}
STAND_IN_RUNS = {"runs/toy2d_labeled": "examples/configs/toy2d_labeled.yaml",
                 "runs/toy2d": "examples/configs/toy2d.yaml"}
STAND_IN_FILES = {"points.csv": "x,y\n0.5,1.0\n-1.0,0.2\n1.5,-0.5\n0.0,0.0\n"}


@dataclass
class Block:
    lang: str
    code: str
    line: int
    reason: str | None  # None: runs; else why it does not

    def where(self, page: str) -> str:
        return f"docs/{page}:{self.line}"


def blocks(page: str) -> list[Block]:
    text = (ROOT / "docs" / page).read_text()
    found = [Block(m["lang"], m["code"], text.count("\n", 0, m.start("lang")) + 1,
                   None if m["reason"] is None else m["reason"].strip()) for m in FENCE.finditer(text)]
    markers = len(re.findall(r"<!--\s*not run", text))
    assert markers == sum(b.reason is not None for b in found), \
        f"docs/{page}: a `<!-- not run: REASON -->` marker must stand on the line right above a code block"
    for b in found:
        assert b.reason != "", f"{b.where(page)}: a not-run block must say why (`<!-- not run: REASON -->`)"
    return found


def commands(block: Block) -> list[tuple[list[str], list[str]]]:
    """The block's command lines as (argv after `flowcore`, paths its `# -> PATH` comments claim)."""
    out = []
    for line in block.code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "flowcore", f"{line!r}: a tour shell line runs flowcore"
        claims = re.findall(r"#\s*->\s*(\S+)", line)
        out.append((words[1:], claims))
    return out


def parses(argv: list[str], where: str) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `flowcore {shlex.join(argv)}` does not parse (exit {exc.code})")


def stand_ins(names: str) -> None:
    """Train the stand-in runs the text names that do not exist yet (small settings)."""
    for run, config in STAND_IN_RUNS.items():
        if re.search(re.escape(run) + r"(?![\w.-])", names) and not Path(run).exists():
            assert main(["train", config, *SMALL["train"]]) == 0, f"stand-in {run} did not train"


def keys(obj) -> set[str]:
    """Dotted keys of nested dicts: {"a": {"b": 1}} -> {"a", "a.b"}."""
    if not isinstance(obj, dict):
        return set()
    return {k for k in obj} | {f"{k}.{sub}" for k, v in obj.items() for sub in keys(v)}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for name, text in STAND_IN_FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()  # the toy configs' train.cpu_threads sets it for the process
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.parametrize("page", PAGES)
def test_tour_page_runs(page, workspace, capsys):
    ran = 0
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks(page):
        where = block.where(page)
        if block.lang == "sh":
            for argv, claims in commands(block):
                parses(argv, where)
                if block.reason is not None:
                    continue
                stand_ins(" ".join(argv))
                command = argv + SMALL.get(argv[0], [])
                code = main(command)
                err = capsys.readouterr().err.strip().splitlines()
                assert code == 0, f"{where}: `flowcore {shlex.join(argv)}` exited {code}: {err[-1:]}"
                for path in claims:
                    assert Path(path).exists(), f"{where}: `flowcore {shlex.join(argv)}` wrote no {path}"
                if argv[0] == "sample":  # the made modalities' folders, as docs/cli.md says
                    out = Path(argv[argv.index("--out") + 1])
                    made = [m for i, w in enumerate(argv) if w == "--make" for m in argv[i + 1].split(",")]
                    assert all((out / m).is_dir() for m in made), f"{where}: no {out}/<modality>/ for {made}"
                ran += 1
        elif block.lang == "python":
            code = compile("\n" * block.line + block.code, f"docs/{page}", "exec")  # tracebacks give page lines
            if block.reason is None:
                stand_ins(block.code)
                exec(code, namespace)
                ran += 1
        elif block.lang == "json" and block.reason is None:
            shown = json.loads(block.code)
            if "run" in shown:  # an eval.json of a run the page made
                run = Path(shown["run"])
                assert (run / "eval.json").is_file(), f"{where}: the page made no {run}/eval.json to compare with"
                real = json.loads((run / "eval.json").read_text())
                assert keys(shown) == keys(real), \
                    f"{where}: the eval.json shown has keys {sorted(keys(shown) ^ keys(real))} that differ from {run}'s"
                ran += 1
    if page in ("cli.md", "python.md"):
        assert ran, f"docs/{page}: the tour page ran nothing"
