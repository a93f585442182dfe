"""``flowcore new-plugin NAME --kind KIND``: write a complete plugin package that passes its tests.

The package is ``<out>/flowcore-NAME/``: a pyproject with the entry point, the hook module, the
options models, a Modality (codec, tokenizer, the default path, one metric) for a toy example
of its kind, a generated dataset, tests that run the conformance kit and train the example
config for a few steps, the example config and a README. The templates are the files under
``templates/`` (``common/`` for every kind, ``<kind>/`` for the modality, its data and options);
``{{key}}`` in a file's text or name is replaced by the value of :func:`fields`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from flowcore.errors import ConfigError, PluginError
from flowcore.spec import check_name

TEMPLATES = Path(__file__).parent / "templates"


#: the example config's network: an MLP over the flattened tokens, fast for fixed token counts
MLP = """model:
  network: mlp          # fixed token counts; `transformer` for variable sizes
  hidden: 256
  depth: 3
"""
#: attention over the points, with no positions: the same velocity for every order of a set
SET_TRANSFORMER = """model:
  network: transformer  # a set has no order: the MLP would have to learn every permutation
  transformer:
    hidden_size: 64
    num_heads: 4
    depth_double: 0
    depth_single: 2
"""


@dataclass(frozen=True)
class Kind:
    """What the toy modality of a kind is: its description, dataset, metric, network and training budget."""

    description: str
    dataset: str
    dataset_description: str
    metric: str
    steps: int
    model: str = MLP
    batch_size: int = 128


KINDS = {
    "sequence": Kind("1-D sequences of float values, a patch of values per token", "waves",
                     "noisy sine waves of 1 to 4 cycles (64 values)", "spectrum_distance", 1500),
    "grid": Kind("2-D grids of float values in [-1, 1], a patch of cells per token", "blobs",
                 "one Gaussian bump per 8 x 8 grid, at a random place and width", "pixel_moments", 1500),
    "set": Kind("unordered sets of 2-D points, one token per point", "rings",
                "16 points on a circle of random centre and radius", "radius_w1", 1500, SET_TRANSFORMER, 64),
    "table": Kind("rows of numeric columns, one token per column", "chain",
                  "4 Gaussian columns, each correlated 0.8 with the one before", "correlation_error", 1500),
}


def fields(name: str, kind: str) -> dict[str, str]:
    """The ``{{key}}`` values of the templates for plugin ``name`` of ``kind``."""
    k = KINDS[kind]
    return {"name": name, "package": f"flowcore_{name}", "dist": f"flowcore-{name.replace('_', '-')}",
            "Class": "".join(part.capitalize() for part in name.split("_")), "kind": kind,
            "description": k.description, "dataset": f"{name}_{k.dataset}",
            "dataset_description": k.dataset_description, "metric": k.metric, "steps": str(k.steps),
            "model": k.model, "batch_size": str(k.batch_size)}


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def new_plugin(name: str, kind: str = "sequence", out: str | Path = ".") -> Path:
    """Write the plugin package ``flowcore-<name>`` into ``out``; return its folder.

    Refuses a name that is not a lower-case identifier, an unknown kind, and a folder that exists.
    """
    try:
        check_name(name, "plugin")
    except PluginError as exc:
        raise ConfigError(str(exc)) from None
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    values = fields(name, kind)
    root = Path(out) / values["dist"]
    if root.exists():
        raise ConfigError(f"{root}: already exists; choose another --out or remove it")
    sources = {"pyproject.toml": "common/pyproject.toml.tmpl", "README.md": "common/README.md.tmpl",
               f"{values['package']}/__init__.py": "common/__init__.py.tmpl",
               f"{values['package']}/plugin.py": "common/plugin.py.tmpl",
               "tests/test_{{name}}.py": "common/tests/test_{{name}}.py.tmpl",
               "examples/{{name}}.yaml": "common/examples/{{name}}.yaml.tmpl"}
    for part in ("modality", "data", "options"):
        sources[f"{values['package']}/{part}.py"] = f"{kind}/{part}.py.tmpl"
    for target, source in sources.items():
        path = root / render(target, values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render((TEMPLATES / source).read_text(), values))
    return root


def _command(args: argparse.Namespace) -> int:
    root = new_plugin(args.name, args.kind, args.out)
    print(f"wrote {root}\n"
          f"next: pip install -e '{root}[test]'   # then `flowcore plugins` lists {args.name!r}\n"
          f"      pytest {root / 'tests'}\n"
          f"      flowcore train {root / 'examples' / (args.name + '.yaml')}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """The ``new-plugin`` subcommand."""
    p = sub.add_parser("new-plugin", help="write a new modality plugin package that passes its tests")
    p.add_argument("name", help="the modality name, a lower-case identifier (the package is flowcore_NAME)")
    p.add_argument("--kind", choices=sorted(KINDS), default="sequence",
                   help="the toy data the modality starts from (default: sequence)")
    p.add_argument("--out", default=".", help="folder to write flowcore-NAME/ into (default: .)")
    p.set_defaults(func=_command)


__all__ = ["KINDS", "new_plugin", "add_command"]
