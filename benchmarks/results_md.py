"""benchmarks/RESULTS.md is one page with a ``## <name>`` section per benchmark; each script
rewrites only its own section."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, name: str, section: str) -> None:
    """Replace the ``## name`` section of ``path`` with ``section`` (appended if absent)."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    heading = f"## {name}"
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    new = section.strip("\n").splitlines()
    if starts:
        start = starts[0]
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new + [""]
    else:
        lines += ["", *new]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
