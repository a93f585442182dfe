"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

- ``<!-- flowcore:cli -->`` in a page becomes every ``flowcore`` command's ``--help``, from the
  argparse parser itself;
- ``<!-- flowcore:config -->`` becomes a table of every config key (type, default, the ``#:``
  comment above the field), from the pydantic models of flowcore/train/config.py;
- a link to a file of the repository outside docs/ (``../../benchmarks/notes/image.md``) becomes
  its path in code, since the site holds docs/ only; a link to a file that exists nowhere is
  left for MkDocs to report.

So the references cannot drift from the code, and a broken link is still a warning.
"""

from __future__ import annotations

import argparse
import inspect
import re
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- flowcore:cli -->" in markdown:
        markdown = markdown.replace("<!-- flowcore:cli -->", cli_reference())
    if "<!-- flowcore:config -->" in markdown:
        markdown = markdown.replace("<!-- flowcore:config -->", config_reference())
    page_dir = (Path(config["docs_dir"]) / page.file.src_path).parent
    return LINK.sub(lambda m: _outside_link(m, page_dir, Path(config["docs_dir"])), markdown)


def _outside_link(match: re.Match, page_dir: Path, docs_dir: Path) -> str:
    text, target = match[1], match[2]
    if "://" in target or target.startswith(("mailto:", "/")):
        return match[0]
    path = (page_dir / target).resolve()
    if path.is_relative_to(docs_dir.resolve()) or not path.exists() or not path.is_relative_to(ROOT):
        return match[0]
    where = path.relative_to(ROOT).as_posix()
    return f"{text} (`{where}` in the repository)" if text.strip("`") != where else f"`{where}`"


# ----------------------------------------------------------------------------- CLI


def cli_reference() -> str:
    """Every subcommand's help, as ``flowcore COMMAND --help`` prints it."""
    from flowcore.cli import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        parts += ["", f"### `flowcore {name}`", "", "```text", command.format_help().rstrip(), "```"]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- config


def config_reference() -> str:
    """One table per section of :class:`flowcore.train.config.Config`: key, type, default, meaning."""
    from pydantic import BaseModel

    from flowcore.schema import _describe, _unwrap
    from flowcore.train.config import Config

    sections = [("top level", Config)]
    rows_by_section = []
    for title, model in sections:
        rows = []
        notes = _field_comments(model)
        for name, field in model.model_fields.items():
            hint = _unwrap(field.annotation)
            if isinstance(hint, type) and issubclass(hint, BaseModel):
                sections.append((name, hint))
                continue
            origin = typing.get_origin(hint)
            if origin is dict and typing.get_args(hint) and _is_model(typing.get_args(hint)[1]):
                sections.append((f"{name}.<name>", typing.get_args(hint)[1]))
                continue
            default = "required" if field.is_required() else _default(field)
            rows.append(f"| `{field.alias or name}` | {_describe(field.annotation)} | {default} | "
                        f"{notes.get(name, '')} |")
        rows_by_section.append((title, rows))
    out = []
    for title, rows in rows_by_section:
        if rows:
            out += [f"### `{title}`" if title != "top level" else "### Top level", "",
                    "| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(out)


def _is_model(hint: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return f"`{value!r}`".replace("|", "\\|")


def _field_comments(model: type) -> dict[str, str]:
    """``name -> text`` of the ``#:`` comment lines right above each field of ``model``'s source."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    notes, pending = {}, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        found = re.match(r"(\w+)\s*:", stripped)
        if found and pending:
            notes[found[1]] = " ".join(pending).replace("|", "\\|")
        pending = []
    return notes
