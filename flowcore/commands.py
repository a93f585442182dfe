"""Training-side subcommands of the ``flowcore`` CLI (train, sample, eval, reflow, invert).

Each handler imports torch/lightning only when it runs, so ``flowcore --help`` stays fast.
docs/cli.md describes every command.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from flowcore.cli_flags import SOLVE_FLAGS, add_sampling_flags, add_trust_flag, sampling_overrides
from flowcore.errors import ConfigError, DataError
from flowcore.io import dumps_json


def _names(items: list[str]) -> list[str]:
    """``--make image,audio --make label`` -> ``["image", "audio", "label"]``."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["image=cat.png", "label=3"]`` -> ``{"image": "cat.png", "label": "3"}``."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{flag} {item!r}: write it as MODALITY=FILE (or MODALITY=VALUE)")
        if _FILE_NAME.fullmatch(value) and not Path(value).exists():
            raise DataError(f"{value}: no such file ({flag} {name}=...)")
        out[name] = value
    return out


#: what reads as a file name (``digit.png``, ``data/rows.csv``), not a literal value (``cat``, ``[0.5, 1]``)
_FILE_NAME = re.compile(r"[^\[\]{}\s,]+\.[A-Za-z][A-Za-z0-9]{0,4}")


def _count(text: str) -> int:
    """``--count``: a whole number of samples, at least 1."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count}: give at least 1")
    return count


def _out_dir(path: str) -> Path:
    """``--out`` of a command that writes a folder: a directory, or a path where one can be made."""
    if Path(path).exists() and not Path(path).is_dir():
        raise DataError(f"{path}: exists and is not a directory (--out takes a folder to write into)")
    return Path(path)


def _train(args: argparse.Namespace) -> int:
    from flowcore.registry import get_registry
    from flowcore.train.config import dump, load_config

    registry = get_registry()
    config = load_config(args.config, args.set or [], registry)
    if args.print_config:
        print(dump(config), end="")
        return 0
    from flowcore.train.checkpoint import run_config
    from flowcore.train.pipeline import train
    from flowcore.train.sharding import end_processes

    if args.trust_run_code and config.stage == "reflow":
        run_config(config.reflow.teacher, registry, trust_run_code=True)

    module = train(config, registry, resume=not args.restart)
    end_processes()
    if module.global_rank == 0:
        print(f"run directory: {config.out_dir}")
    return 0


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on stderr: on at a terminal, off with --quiet or when stderr is not a TTY."""
    return not args.quiet and sys.stderr.isatty()


def _sampling(args: argparse.Namespace) -> dict:
    """The sampling options the user gave (a flag left out keeps the run's ``sample`` value)."""
    given = sampling_overrides(args)
    return {k: v for k, v in given.items() if k not in ("device", "quiet")}


def _sample(args: argparse.Namespace) -> int:
    from flowcore.train.pipeline import sample

    report = sample(args.checkpoint, _names(args.make), _pairs(args.given, "--given"), _out_dir(args.out),
                    count=args.count, device=args.device, progress=_progress(args), via=_names(args.via or []),
                    **_sampling(args))
    print(report.summary())
    return 0


def _eval(args: argparse.Namespace) -> int:
    from flowcore.train.pipeline import evaluate

    if args.out and Path(args.out).is_dir():
        raise DataError(f"{args.out}: is a directory (--out takes the JSON file to write)")
    report = evaluate(args.checkpoint, args.out, split=args.split, count=args.count, device=args.device,
                      progress=_progress(args), directions=args.direction, via=_names(args.via or []),
                      **_sampling(args))
    print(dumps_json(report, indent=1))
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from flowcore.train.gallery import gallery

    page = gallery(args.checkpoint, args.out, count=args.count or 4, directions=args.direction, scores=args.scores,
                   split=args.split, device=args.device, via=_names(args.via or []), via_scores=args.via_scores,
                   **_sampling(args))
    print(f"gallery: {page}")
    return 0


def _reflow(args: argparse.Namespace) -> int:
    from flowcore.registry import get_registry
    from flowcore.train.pipeline import train
    from flowcore.train.reflow import reflow_config
    from flowcore.train.sharding import end_processes

    registry = get_registry()
    config = reflow_config(args.checkpoint, registry, args.config, args.set or [], args.out,
                           trust_run_code=args.trust_run_code)
    module = train(config, registry, resume=not args.restart)
    end_processes()
    if module.global_rank == 0:
        print(f"run directory: {config.out_dir}")
    return 0


def _invert(args: argparse.Namespace) -> int:
    from flowcore.train.pipeline import invert

    if not Path(args.input).is_file():
        raise DataError(f"{args.input}: no such file" if not Path(args.input).exists() else
                        f"{args.input}: not a file (--input takes one file the modality's codec reads)")
    report = invert(args.checkpoint, args.modality, args.input, _out_dir(args.out), given=_pairs(args.given, "--given"),
                    device=args.device, **_sampling(args))
    print(dumps_json(report, indent=1))
    return 0


def _edit(args: argparse.Namespace) -> int:
    from flowcore.train.edit import edit_file

    if not Path(args.input).is_file():
        raise DataError(f"{args.input}: no such file" if not Path(args.input).exists() else
                        f"{args.input}: not a file (--input takes one file the modality's codec reads)")
    modules = [n.strip() for n in (args.inject_into or "").split(",") if n.strip()]
    report = edit_file(args.checkpoint, args.input, _out_dir(args.out), _pairs(getattr(args, "from"), "--from"),
                       _pairs(args.to, "--to"), modality=args.modality, strength=args.strength, inject=args.inject,
                       inject_modules=modules, method=args.method, average=args.average, device=args.device,
                       **_sampling(args))
    print(dumps_json(report, indent=1))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the training-side subcommands on the CLI's subparsers."""
    p = sub.add_parser("train", help="train the stage a YAML config describes (resumes its last checkpoint)")
    p.add_argument("config", help="YAML config (docs/config.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start from step 0")
    p.add_argument("--print-config", action="store_true",
                   help="print the validated config with every default filled in (YAML) and exit without training")
    add_trust_flag(p, run=None)
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="generate samples from a trained run")
    p.add_argument("checkpoint", help="run directory (out_dir of `flowcore train`)")
    p.add_argument("--make", action="append", required=True, metavar="MOD[,MOD]",
                   help="modality to generate (repeatable, or comma-separated: image,audio generates them jointly)")
    p.add_argument("--given", action="append", metavar="MOD=FILE", help="condition: a file or a value (repeatable)")
    p.add_argument("--count", type=_count, help="samples (default: the given file's count, else sample.count)")
    p.add_argument("--via", action="append", metavar="MOD[,MOD]",
                   help="make these first from --given, then give them: --make audio --given image=x.png --via label")
    p.add_argument("--out", required=True, help="output directory")
    add_sampling_flags(p, (*SOLVE_FLAGS, "cfg", "shift", "quiet"))
    add_trust_flag(p)
    p.set_defaults(func=_sample)

    p = sub.add_parser("eval", help="metrics of a trained run against held-out data, as JSON")
    p.add_argument("checkpoint", help="run directory")
    p.add_argument("--out", help="JSON file (default: <run>/eval.json)")
    p.add_argument("--split", choices=["val", "test"], help="held-out split (default: eval.split)")
    p.add_argument("--count", type=_count, help="held-out items (default: eval.count)")
    p.add_argument("--direction", action="append", metavar="MADE|GIVEN",
                   help="a direction to measure, e.g. 'image|label', 'image,audio|label' (repeatable; "
                        "default: the run's eval.directions)")
    p.add_argument("--via", action="append", metavar="MOD[,MOD]",
                   help="in each direction that neither makes nor gives them, make these first, then give them")
    add_sampling_flags(p, (*SOLVE_FLAGS, "cfg", "shift", "quiet"))
    add_trust_flag(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("gallery", help="every direction of a run on a few held-out items, as one HTML page")
    p.add_argument("checkpoint", help="run directory")
    p.add_argument("--out", required=True, help="output directory (index.html, the files it shows)")
    p.add_argument("--count", type=_count, help="held-out items, one table row each (default 4)")
    p.add_argument("--direction", action="append", metavar="MADE|GIVEN",
                   help="a direction to show (repeatable; default: the run's eval.directions)")
    p.add_argument("--scores", help="an eval report (flowcore eval's JSON) whose figures head the columns")
    p.add_argument("--via", action="append", metavar="MOD[,MOD]",
                   help="beside each direction that neither makes nor gives them, a column made via these")
    p.add_argument("--via-scores", help="an eval report made with --via, whose figures head the chained columns")
    p.add_argument("--split", choices=["val", "test"], help="held-out split (default: eval.split)")
    add_sampling_flags(p, (*SOLVE_FLAGS, "cfg", "shift", "quiet"))
    add_trust_flag(p)
    p.set_defaults(func=_gallery)

    p = sub.add_parser("reflow", help="straighten a trained flow: generate pairs, retrain on them")
    p.add_argument("checkpoint", help="run directory of the teacher")
    p.add_argument("--config", help="a `stage: reflow` config (default: the teacher's config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", help="output run directory (default: <checkpoint>_reflow or the config's out_dir)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    add_trust_flag(p)
    p.set_defaults(func=_reflow)

    p = sub.add_parser("invert", help="map a file to the noise that generates it, and regenerate it")
    p.add_argument("checkpoint", help="run directory")
    p.add_argument("--modality", "--mod", required=True, help="the modality of the file")
    p.add_argument("--input", required=True, help="file read with the modality's codec")
    p.add_argument("--given", action="append", metavar="MOD=FILE", help="condition (repeatable)")
    p.add_argument("--out", required=True, help="output directory")
    add_sampling_flags(p, (*SOLVE_FLAGS, "shift"))
    add_trust_flag(p)
    p.set_defaults(func=_invert)

    p = sub.add_parser("edit", help="edit a file by inversion: invert it under one condition, regenerate under another")
    p.add_argument("checkpoint", help="run directory (a run with a condition)")
    p.add_argument("--input", required=True, help="file read with the modality's codec (all its samples are edited)")
    p.add_argument("--from", action="append", required=True, metavar="MOD=VALUE",
                   help="the source condition, a value or a file (repeatable), e.g. label=3")
    p.add_argument("--to", action="append", required=True, metavar="MOD=VALUE",
                   help="the target condition (repeatable), e.g. label=8")
    p.add_argument("--modality", "--mod", help="the modality of the file (default: the run's generated one)")
    p.add_argument("--strength", type=float, default=1.0,
                   help="time the edit starts from (the inversion reaches), in (0, 1]; lower keeps more of the input "
                        "(default 1)")
    p.add_argument("--inject", type=int, default=0, metavar="K",
                   help="re-inject the source outputs of --inject-into in the first K denoising steps (default 0)")
    p.add_argument("--inject-into", metavar="MODULE[,MODULE]",
                   help="submodules of the network whose source outputs are re-injected, e.g. down1")
    p.add_argument("--method", choices=("inversion", "flowedit"), default="inversion",
                   help="inversion (invert, then regenerate) or flowedit (no inversion: Euler steps along the "
                        "difference of the target and source fields; --solver euler)")
    p.add_argument("--average", type=int, default=1, metavar="K",
                   help="flowedit: noise draws averaged per step (default 1)")
    p.add_argument("--out", required=True, help="output directory")
    add_sampling_flags(p, (*SOLVE_FLAGS, "cfg", "shift"))
    add_trust_flag(p)
    p.set_defaults(func=_edit)
