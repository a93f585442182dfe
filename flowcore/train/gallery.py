"""``flowcore gallery``: every direction of a run, side by side, on one HTML page.

For a few held-out items, each direction the run measures (``eval.directions``, "made|given")
is generated from the items' given samples and written with the modalities' codecs. The page
is a table: a row per held-out item, its real samples first, then a column per direction with
what was made: images, audio players with their spectrograms, labels as text, and each made
sample's class under the modality's classifier. With an eval report (``flowcore eval``), each
column's head carries that direction's scores.

The page needs nothing but the files beside it; a script at its end records, on ``<body>``,
how many images loaded and how many audio elements have a duration, so a headless browser
can check it (tests/test_gallery_browser.py).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from flowcore.io import atomic_path, dumps_json, write_text_atomic
from flowcore.registry import get_registry
from flowcore.train.pipeline import direction_key, eval_tasks, held_out, load

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TEXT_SUFFIXES = (".txt",)


@dataclass
class Cell:
    """What one table cell shows: files (by suffix: image, audio player, text) and a caption."""

    files: list[Path] = field(default_factory=list)
    caption: str = ""


@dataclass
class Column:
    """A table column: its title ("audio | image") and a line of scores."""

    title: str
    scores: str = ""


def media_html(path: Path, root: Path) -> str:
    """The element that shows ``path`` (relative to the page in ``root``)."""
    src = html.escape(Path(path).relative_to(root).as_posix(), quote=True)
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return f'<img src="{src}" alt="{src}">'
    if suffix in AUDIO_SUFFIXES:
        return f'<audio controls preload="metadata" src="{src}"></audio>'
    if suffix in TEXT_SUFFIXES:
        return f'<span class="text">{html.escape(Path(path).read_text().strip())}</span>'
    return f'<a href="{src}">{html.escape(Path(path).name)}</a>'


#: records on <body> how many media loaded: data-images="12/12" data-audio="8/8"
CHECK_SCRIPT = """
<script>
function recordLoaded() {
  const images = [...document.images], sounds = [...document.querySelectorAll('audio')];
  const shown = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const playable = sounds.filter(a => a.duration > 0).length;
  document.body.dataset.images = shown + '/' + images.length;
  document.body.dataset.audio = playable + '/' + sounds.length;
}
window.addEventListener('load', () => {
  recordLoaded();
  document.querySelectorAll('audio').forEach(a => a.addEventListener('loadedmetadata', recordLoaded));
});
</script>
"""

STYLE = """
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 6px; vertical-align: top; text-align: center; }
th { background: #f4f4f4; font-weight: 600; }
th .scores { display: block; font-weight: normal; font-size: 0.8em; color: #555; max-width: 16em; }
td img { display: block; margin: 2px auto; image-rendering: pixelated; max-width: 220px; min-width: 84px; }
td audio { width: 200px; display: block; margin: 2px auto; }
td .text { font-size: 1.6em; font-weight: 600; }
td .caption { display: block; font-size: 0.8em; color: #555; }
</style>
"""


def write_page(out_dir: Path, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]],
               intro: str = "") -> Path:
    """``out_dir/index.html``: a table of ``rows`` (cells under ``columns``); files are linked relatively."""
    out_dir = Path(out_dir)
    head = "".join(f'<th>{html.escape(c.title)}<span class="scores">{html.escape(c.scores)}</span></th>'
                   for c in columns)
    body = []
    for cells in rows:
        tds = []
        for cell in cells:
            inner = "".join(media_html(f, out_dir) for f in cell.files)
            if cell.caption:
                inner += f'<span class="caption">{html.escape(cell.caption)}</span>'
            tds.append(f"<td>{inner}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    page = (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{STYLE}"
            f"</head>\n<body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(intro)}</p>\n"
            f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + f"\n</table>\n{CHECK_SCRIPT}</body></html>\n")
    path = out_dir / "index.html"
    write_text_atomic(path, page)
    return path


def score_line(metrics: Mapping[str, Any] | None, ceilings: Mapping[str, float], made: Sequence[str]) -> str:
    """ "image class accuracy 0.97 (real 0.99) · classifier FD 12.3" from a direction's eval entry."""
    if not metrics:
        return ""
    parts = []
    for name in made:
        scores = metrics.get(name, {}) if len(made) > 1 else metrics
        prefix = f"{name} "
        if scores.get("class_accuracy") is not None:
            real = ceilings.get(f"{name}.class_accuracy")
            parts.append(f"{prefix}class accuracy {scores['class_accuracy']:.3f}"
                         + (f" (real {real:.3f})" if real is not None else ""))
        if scores.get("accuracy") is not None:
            parts.append(f"{prefix}accuracy {scores['accuracy']:.3f}")
        if scores.get("classifier_fd") is not None:
            parts.append(f"{prefix}classifier FD {scores['classifier_fd']:.1f}")
    if metrics.get("class_agreement") is not None:
        real = ceilings.get(f"{','.join(made)}.class_agreement")
        parts.append(f"agreement {metrics['class_agreement']:.3f}"
                     + (f" (real {real:.3f})" if real is not None else ""))
    return " · ".join(parts)


def gallery(run_dir: str | Path, out_dir: str | Path, *, count: int = 4, directions: Sequence[str] | None = None,
            scores: str | Path | None = None, split: str | None = None, device: str | None = None, registry=None,
            via: Sequence[str] = (), via_scores: str | Path | None = None, **overrides) -> Path:
    """Generate every direction for ``count`` held-out items, write the files and ``out_dir/index.html``.

    ``scores``: an eval report (``flowcore eval``'s JSON) whose figures head the columns.
    ``via``: modalities to chain through: each direction that neither makes nor gives them gets a
    second column, made via them (:meth:`FlowPipeline.generate`), headed by ``via_scores`` (an eval
    report made with ``--via``). ``overrides``: :class:`~flowcore.train.sampling.SamplingOptions`
    fields. Returns the page.
    """
    registry = registry or get_registry()
    pipe = load(run_dir, device=device, registry=registry)
    config, out_dir = pipe.config, Path(out_dir)
    tasks = eval_tasks(config, directions)
    items = held_out(config, pipe.bundles, split or config.eval.split, count, registry, spread=True)
    n = len(next(iter(items.values())))
    report = json.loads(Path(scores).read_text()) if scores else {}
    chained_report = json.loads(Path(via_scores).read_text()) if via_scores else {}
    ceilings = {**chained_report.get("ceilings", {}), **report.get("ceilings", {})}
    class_names = _class_names(pipe, config.eval.class_by)

    def cells(name: str, samples: Sequence[Any], folder: Path) -> list[Cell]:
        """One cell per sample: its own file, a preview where the file is not itself an image, its class."""
        modality = pipe.bundles[name].modality
        predicted = modality.classify(samples) if name != config.eval.class_by else None
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i, sample in enumerate(samples):
            files = []
            if modality.codec is not None:
                files.append(folder / f"{name}_{i:04d}{modality.codec.extensions[0]}")
                with atomic_path(files[0]) as tmp:
                    modality.codec.write(sample, tmp)
            if not files or files[0].suffix.lower() not in IMAGE_SUFFIXES + TEXT_SUFFIXES:
                preview = modality.preview([sample], folder / f"{name}_{i:04d}_preview.png")
                files += [Path(preview)] if preview is not None else []
            caption = f"classified {class_names(predicted[i])}" if predicted is not None else ""
            out.append(Cell(files, caption))
        return out

    columns = [Column(f"held-out {name}") for name in items]
    table = [[] for _ in range(n)]
    for name, samples in items.items():
        for row, cell in zip(table, cells(name, samples, out_dir / "held_out" / name)):
            row.append(cell)
    entries: dict[str, Any] = {}
    for made, given in tasks:
        key = direction_key(made, given)
        chain = tuple(v for v in via if v not in made + given)
        for through in ((), chain) if chain else ((),):
            generated = pipe.generate(made, {g: items[g] for g in given}, n, via=through, **overrides)
            suffix = "".join(f" via {v}" for v in through)
            folder = out_dir / (key.replace("|", "_from_").replace(",", "+") + suffix.replace(" ", "_"))
            made_cells = {m: cells(m, generated[m], folder / m) for m in (*through, *made)}
            for i, row in enumerate(table):  # a chained cell shows what it went through first
                files = [f for m in (*through, *made) for f in made_cells[m][i].files]
                captions = [("via " if m in through else "") + c
                            for m in (*through, *made) if (c := made_cells[m][i].caption)]
                row.append(Cell(files, "; ".join(captions)))
            title = f"{' + '.join(made)} ← {' + '.join(given) or 'nothing'}{suffix}"
            scored = (chained_report if through else report).get("metrics", {}).get(key)
            columns.append(Column(title, score_line(scored, ceilings, made)))
            entries[key + suffix] = {"made": made, "given": given, "via": list(through), "folder": str(folder)}
    options = pipe.sampling_options(**overrides)
    intro = (f"{pipe.directory}: {n} held-out items ({split or config.eval.split} split); each column after the "
             f"held-out samples is one direction, made from the samples it names in the same row "
             f"({options.steps} {options.solver} steps, cfg {options.cfg}"
             + (", or sample.cfg_by_direction's" if config.sample.cfg_by_direction and overrides.get("cfg") is None
                else "") + ").")
    page = write_page(out_dir, "flowcore: every direction of " + Path(pipe.directory).name, columns, table, intro)
    write_text_atomic(out_dir / "gallery.json", dumps_json({"run": str(pipe.directory), "count": n,
                                                            "directions": entries, "page": str(page)}, indent=1))
    return page


def _class_names(pipe, class_by: str):
    """index -> the class modality's name for it ('7', 'seven'), else the index."""
    bundle = pipe.bundles.get(class_by)
    names = getattr(bundle.modality, "classes", None) if bundle is not None else None
    return lambda k: names[k] if names is not None and 0 <= k < len(names) else str(k)


# ----------------------------------------------------------------------------- headless check

#: headless browsers tried in turn (Debian: chromium-headless-shell, chromium)
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def check_page(page: str | Path, screenshot: str | Path | None = None, browser: str | None = None,
               budget_ms: int = 10000, size: tuple[int, int] = (1600, 1200)) -> dict[str, tuple[int, int]]:
    """Open ``page`` in headless Chromium: ``{"images": (loaded, total), "audio": (playable, total)}``.

    The counts are what the page's own script recorded on ``<body>`` once the browser's virtual
    time ran out (``budget_ms``). ``screenshot``: also write a PNG of the page there.
    """
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless Chromium found (tried {', '.join(BROWSERS)}); on Debian: "
                                "apt-get install chromium-headless-shell")
    url = Path(page).resolve().as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--autoplay-policy=no-user-gesture-required", f"--virtual-time-budget={budget_ms}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    found = {}
    for kind in ("images", "audio"):
        match = re.search(rf'data-{kind}="(\d+)/(\d+)"', dom)
        if match is None:
            raise RuntimeError(f"{page}: the page recorded no {kind} count (its script did not run)")
        found[kind] = (int(match.group(1)), int(match.group(2)))
    if screenshot is not None:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*flags, f"--screenshot={Path(screenshot).resolve()}", f"--window-size={size[0]},{size[1]}",
                        url], capture_output=True, timeout=120, check=True)
    return found
