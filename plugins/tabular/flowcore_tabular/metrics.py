"""Real vs generated tables, as TabSyn's evaluation scripts compute them. No network is downloaded.

Every metric takes ``(real rows, generated rows)``; ``flowcore eval`` passes the evaluation
split as ``real``. The training rows (for DCR) come from the modality.

shape, trend     sdmetrics ``QualityReport``: the "Column Shapes" and "Column Pair Trends"
                 property scores (KS / TV complement per column; correlation / contingency
                 similarity per pair). Higher is better, 1 = identical. In sdmetrics 0.32
                 the trend averages only the pairs whose *real* association passes the
                 report's thresholds (|Pearson r| > 0.5 for two numerics, Cramér's V > 0.3
                 otherwise, numerics cut into 10 equal-width bins): on Adult 13 of 105 pairs,
                 titanic 6 of 28, german credit 4 of 45, so one pair weighs a lot.
c2st             sdmetrics ``LogisticDetection``: 1 - (2 * max(AUC, 0.5) - 1) of a logistic
                 regression telling real from generated. Higher is better, 1 = indistinguishable.
                 A generated category the real rows lack becomes their most frequent one
                 (sdmetrics' encoder, fitted on the real rows, cannot encode it).
mle_auc          machine-learning efficiency: a gradient-boosted model (scikit-learn
 / mle_rmse      ``HistGradientBoosting*``; TabSyn uses XGBoost) fitted on the generated rows,
                 its depth chosen on a held-out ninth of them, scored on the real rows: ROC AUC
                 (one-vs-rest for several classes) when the target is categorical, higher is
                 better; RMSE for a numeric target, lower is better. Features as TabSyn's
                 ``mle.py``: numeric x -> log(max(x, 0.01)) if min >= 0 and max >= 1000, else
                 5 (x - min) / (max - min); categories one-hot.
alpha_precision  synthcity's "naive" AlphaPrecision (TabSyn ``eval_quality.py``): rows as
 / beta_recall   numeric + one-hot, min-max scaled on the real rows (the last column dropped,
                 as synthcity drops the loader's target), equal numbers of rows; the
                 delta-precision-alpha and delta-coverage-beta scores. Higher is better.
dcr_gap          distance to closest record (TabSyn ``eval_dcr.py``): numeric / range and
                 one-hot, L1; the share of generated rows nearer to a training row than to a
                 real (held-out) row, reported as |share - 0.5| (0 = ideal, 0.5 = copies or
                 garbage). Exact ties count one half. At most 2,000 generated rows are used.

Rows are subsampled with a fixed seed where a metric needs equal sizes or a bound on time.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from flowcore.modality import Metric
from flowcore.splits import permuted_split
from flowcore_tabular.schema import Schema, to_seconds

Rows = Sequence[Mapping[str, Any]]
DCR_MAX_ROWS = 2000
ALPHA_MAX_ROWS = 10000


def single_threaded(fn):
    """Run ``fn`` with one OpenMP/BLAS thread: scikit-learn's gradient boosting spins its
    threads, and on a busy machine that made a 0.3 s fit take 4 s."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return fn(*args, **kwargs)
    return run

# ----------------------------------------------------------------------------- frames


def to_frame(schema: Schema, rows: Rows):
    """Rows -> a pandas DataFrame with dtypes sdmetrics understands (missing -> NaN/None)."""
    import pandas as pd

    data = {}
    for col in schema.columns:
        values = [r[col.name] for r in rows]
        if col.kind in ("numeric", "integer"):
            data[col.name] = pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
        elif col.kind == "datetime":
            data[col.name] = pd.to_datetime(pd.Series(values, dtype="object"))
        else:
            data[col.name] = pd.Series([None if v is None else str(v) for v in values], dtype="object")
    return pd.DataFrame(data)


def sdmetrics_metadata(schema: Schema) -> dict[str, Any]:
    sdtype = {"numeric": "numerical", "integer": "numerical", "categorical": "categorical",
              "boolean": "categorical", "datetime": "datetime"}
    return {"columns": {c.name: {"sdtype": sdtype[c.kind]} for c in schema.columns}}


class OneHotFeatures:
    """Rows -> [numeric (raw, missing -> real mean) | one-hot categories], fitted on real rows."""

    def __init__(self, schema: Schema, real: Rows):
        self.schema = schema
        self.cont = [c for c in schema.columns if c.continuous]
        self.disc = [c for c in schema.columns if not c.continuous]
        raw = self._numeric(real)
        self.mean = np.nan_to_num(np.nanmean(raw, axis=0)) if raw.size else np.zeros(raw.shape[1])
        self.levels = [sorted({self._cat(r[c.name]) for r in real}) for c in self.disc]
        filled = self._fill(raw)
        self.low = filled.min(axis=0) if len(filled) else np.zeros(len(self.cont))
        self.high = filled.max(axis=0) if len(filled) else np.ones(len(self.cont))

    @staticmethod
    def _cat(v: Any) -> str:
        return "<missing>" if v is None else str(v)

    def _numeric(self, rows: Rows) -> np.ndarray:
        def num(col, v):
            if v is None:
                return np.nan
            return to_seconds(v) if col.kind == "datetime" else float(v)
        return np.array([[num(c, r[c.name]) for c in self.cont] for r in rows], dtype=np.float64).reshape(
            len(rows), len(self.cont))

    def _fill(self, raw: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(raw), self.mean, raw)

    def numeric(self, rows: Rows) -> np.ndarray:
        return self._fill(self._numeric(rows))

    def onehot(self, rows: Rows) -> np.ndarray:
        blocks = []
        for col, levels in zip(self.disc, self.levels):
            index = {v: i for i, v in enumerate(levels)}
            block = np.zeros((len(rows), len(levels)))
            for i, r in enumerate(rows):
                j = index.get(self._cat(r[col.name]))
                if j is not None:  # a level the real rows never show encodes as all zeros (sklearn's 'ignore')
                    block[i, j] = 1.0
            blocks.append(block)
        return np.concatenate(blocks, 1) if blocks else np.zeros((len(rows), 0))


def _subsample(rows: Rows, n: int, seed: int) -> list:
    if len(rows) <= n:
        return list(rows)
    idx = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    return [rows[i] for i in sorted(idx)]


# ----------------------------------------------------------------------------- sdmetrics


class _QualityCache:
    """One QualityReport serves both ``shape`` and ``trend`` of the same (real, generated) pair.

    Keyed by the identity of the two lists, which it keeps alive so the ids stay valid.
    """

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.keep: tuple[Any, Any] | None = None
        self.scores: dict[str, float] = {}

    @single_threaded
    def get(self, schema: Schema, real: Rows, generated: Rows) -> dict[str, float]:
        key = (id(real), id(generated))
        if key != self.key:
            from sdmetrics.reports.single_table import QualityReport

            report = QualityReport()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report.generate(to_frame(schema, real), to_frame(schema, generated), sdmetrics_metadata(schema),
                                verbose=False)
            props = report.get_properties()
            self.scores = {p: float(s) for p, s in zip(props["Property"], props["Score"])}
            self.key, self.keep = key, (real, generated)
        return self.scores


def column_shapes(schema: Schema, real: Rows, generated: Rows, cache: _QualityCache) -> float:
    return cache.get(schema, real, generated)["Column Shapes"]


def column_pair_trends(schema: Schema, real: Rows, generated: Rows, cache: _QualityCache) -> float:
    return cache.get(schema, real, generated)["Column Pair Trends"]


@single_threaded
def c2st(schema: Schema, real: Rows, generated: Rows) -> float:
    """sdmetrics LogisticDetection. Its encoder is fitted on the real rows and cannot encode a
    category they lack (a rare one a subsample missed), so such generated values become the
    real column's most frequent category."""
    from collections import Counter

    from sdmetrics.single_table import LogisticDetection

    generated = list(generated)
    for col in schema.columns:
        if col.continuous:
            continue
        seen = Counter(r[col.name] for r in real)
        mode = seen.most_common(1)[0][0]
        if any(r[col.name] not in seen for r in generated):
            generated = [r if r[col.name] in seen else {**r, col.name: mode} for r in generated]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(LogisticDetection.compute(to_frame(schema, real), to_frame(schema, generated),
                                               sdmetrics_metadata(schema)))


# ----------------------------------------------------------------------------- MLE


def _mle_features(schema: Schema, target: str, train: Rows, test: Rows) -> tuple[np.ndarray, np.ndarray]:
    """TabSyn's ``feat_transform``: scaled/logged numerics and one-hot categories, target left out."""
    feats = Schema(tuple(c for c in schema.columns if c.name != target), schema.missing)
    enc = OneHotFeatures(feats, train)
    out = []
    for rows in (train, test):
        num = enc.numeric(rows)
        logged = (enc.low >= 0) & (enc.high >= 1e3)
        span = np.where(enc.high > enc.low, enc.high - enc.low, 1.0)
        num = np.where(logged, np.log(np.maximum(num, 1e-2)), (num - enc.low) / span * 5)
        out.append(np.concatenate([num, enc.onehot(rows)], 1))
    return out[0], out[1]


@single_threaded
def mle(schema: Schema, target: str, real: Rows, generated: Rows, seed: int = 0) -> float:
    """Train on generated rows, test on real rows (see the module docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import mean_squared_error, roc_auc_score

    col = schema[target]
    gen = [r for r in generated if r[target] is not None]
    real = [r for r in real if r[target] is not None]
    x_gen, x_real = _mle_features(schema, target, gen, real)
    classify = not col.continuous
    if classify:
        y_gen = np.array([str(r[target]) for r in gen])
        y_real = np.array([str(r[target]) for r in real])
        classes = sorted(set(y_real))
        if len(set(y_gen)) < 2 or len(classes) < 2:
            return 0.5  # a generator that never varies the target predicts nothing: chance
    else:
        y_gen = np.array([float(to_seconds(r[target]) if col.kind == "datetime" else r[target]) for r in gen])
        y_real = np.array([float(to_seconds(r[target]) if col.kind == "datetime" else r[target]) for r in real])
    parts = permuted_split(len(gen), seed, {"val": max(len(gen) // 9, 1), "fit": None})
    val, fit = parts["val"], parts["fit"]
    model_cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor

    def score(model, x, y) -> float:
        if classify:
            known = list(model.classes_)
            proba = model.predict_proba(x)
            if len(classes) == 2:
                pos = classes[1]
                p = proba[:, known.index(pos)] if pos in known else np.zeros(len(x))
                return float(roc_auc_score(y == pos, p)) if len(set(y)) == 2 else 0.5
            full = np.zeros((len(x), len(classes)))
            for j, c in enumerate(classes):
                if c in known:
                    full[:, j] = proba[:, known.index(c)]
            present = [j for j, c in enumerate(classes) if c in set(y)]
            if len(present) < 2:
                return 0.5
            full = full[:, present] / np.clip(full[:, present].sum(1, keepdims=True), 1e-12, None)
            return float(roc_auc_score(y, full, multi_class="ovr", labels=[classes[j] for j in present]))
        return -float(np.sqrt(mean_squared_error(y, model.predict(x))))

    best, best_score = None, -np.inf
    for leaves in (7, 31, 63):
        model = model_cls(max_leaf_nodes=leaves, max_iter=100, early_stopping=False, random_state=seed)
        if classify and len(set(y_gen[fit])) < 2:
            fit = np.concatenate([val, fit])  # every row, in the split's order
        model.fit(x_gen[fit], y_gen[fit])
        s = score(model, x_gen[val], y_gen[val]) if len(set(y_gen[val])) > 1 or not classify else 0.0
        if s > best_score:
            best, best_score = leaves, s
    model = model_cls(max_leaf_nodes=best, max_iter=100, early_stopping=False, random_state=seed)
    model.fit(x_gen[fit], y_gen[fit])
    result = score(model, x_real, y_real)
    return result if classify else -result


# ----------------------------------------------------------------------------- alpha / beta


@single_threaded
def alpha_beta(schema: Schema, real: Rows, generated: Rows, seed: int = 0) -> tuple[float, float]:
    """synthcity's naive (delta) alpha-precision and beta-recall, as TabSyn reports them."""
    from sklearn.neighbors import NearestNeighbors

    n = min(len(real), len(generated), ALPHA_MAX_ROWS)
    real, generated = _subsample(real, n, seed), _subsample(generated, n, seed + 1)
    enc = OneHotFeatures(schema, real)
    x = np.concatenate([enc.numeric(real), enc.onehot(real)], 1)[:, :-1]
    y = np.concatenate([enc.numeric(generated), enc.onehot(generated)], 1)[:, :-1]
    low, high = x.min(0), x.max(0)
    span = np.where(high > low, high - low, 1.0)
    x, y = (x - low) / span, (y - low) / span

    alphas = np.linspace(0, 1, 30)
    center = x.mean(0)
    radii = np.quantile(np.linalg.norm(x - center, axis=1), alphas)
    synth_center = y.mean(0)
    synth_to_center = np.linalg.norm(y - center, axis=1)
    real_to_real = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)[0][:, 1]
    real_to_synth, args = NearestNeighbors(n_neighbors=1).fit(y).kneighbors(x)
    real_to_synth, args = real_to_synth[:, 0], args[:, 0]
    closest_d = np.linalg.norm(y[args] - synth_center, axis=1)
    closest_radii = np.quantile(closest_d, alphas)
    precision = np.array([np.mean(synth_to_center <= r) for r in radii])
    coverage = np.array([np.mean((real_to_synth <= real_to_real) & (closest_d <= r)) for r in closest_radii])
    alpha = 1 - np.abs(alphas - precision).sum() / alphas.sum()
    beta = 1 - np.abs(alphas - coverage).sum() / alphas.sum()
    return float(alpha), float(beta)


# ----------------------------------------------------------------------------- DCR


@single_threaded
def dcr_share(schema: Schema, train: Rows, holdout: Rows, generated: Rows, seed: int = 0) -> float:
    """The share of generated rows nearer (L1) to a training row than to a held-out row."""
    import torch

    generated = _subsample(generated, DCR_MAX_ROWS, seed)
    enc = OneHotFeatures(schema, train)
    span = np.where(enc.high > enc.low, enc.high - enc.low, 1.0)

    def feats(rows: Rows) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([enc.numeric(rows) / span, enc.onehot(rows)], 1)).float()

    g, tr, ho = feats(generated), feats(train), feats(holdout)

    def nearest(ref: torch.Tensor) -> torch.Tensor:
        out = [torch.cdist(g[i:i + 256], ref, p=1).min(1).values for i in range(0, len(g), 256)]
        return torch.cat(out)

    d_train, d_hold = nearest(tr), nearest(ho)
    return float(((d_train < d_hold).float() + 0.5 * (d_train == d_hold).float()).mean())


# ----------------------------------------------------------------------------- registry


def tabular_metrics(schema: Schema, target: str, train: Rows, seed: int = 0) -> dict[str, Metric]:
    """The Metric objects of a tabular modality (names and directions as documented above)."""
    cache = _QualityCache()
    alpha_cache: dict[tuple[int, int], tuple[float, float]] = {}

    def ab(real: Rows, gen: Rows) -> tuple[float, float]:
        key = (id(real), id(gen))
        if key not in alpha_cache:
            alpha_cache.clear()
            alpha_cache[key] = alpha_beta(schema, real, gen, seed)
        return alpha_cache[key]

    classify = not schema[target].continuous
    fns: list[tuple[str, Callable[[Rows, Rows], float], bool, str]] = [
        ("shape", lambda r, g: column_shapes(schema, r, g, cache), False, "sdmetrics Column Shapes"),
        ("trend", lambda r, g: column_pair_trends(schema, r, g, cache), False, "sdmetrics Column Pair Trends"),
        ("c2st", lambda r, g: c2st(schema, r, g), False, "sdmetrics LogisticDetection"),
        ("mle_auc" if classify else "mle_rmse", lambda r, g: mle(schema, target, r, g, seed), not classify,
         f"gradient boosting trained on generated, tested on real, target {target!r}"),
        ("alpha_precision", lambda r, g: ab(r, g)[0], False, "synthcity naive delta-precision-alpha"),
        ("beta_recall", lambda r, g: ab(r, g)[1], False, "synthcity naive delta-coverage-beta"),
        ("dcr_gap", lambda r, g: abs(dcr_share(schema, train, r, g, seed) - 0.5), True,
         "|share of generated rows nearer to train than to real - 0.5|"),
    ]
    return {name: Metric(name, fn, lower, desc) for name, fn, lower, desc in fns}

