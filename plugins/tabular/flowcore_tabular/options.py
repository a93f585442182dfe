"""Options of the tabular modality and its datasets: pydantic models, no torch.

The entry point (flowcore_tabular/plugin.py) declares them on its specs, so a config is
checked against them before torch or this plugin's heavy modules are imported. The defaults
are the factories' defaults (flowcore_tabular.modality.Tabular, flowcore_tabular.datasets).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flowcore.schema import Number, Options

TABLES = ("adult", "titanic", "german_credit", "wine", "breast_cancer")
Kind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]


class TabularOptions(Options):
    """``modalities.tabular`` (the module docstring of flowcore_tabular.modality says what each does)."""

    dataset: Literal[TABLES] | None = None
    csv: str | None = None
    schema_: dict[str, Kind] | None = Field(None, alias="schema")
    missing: list[str] | None = None
    tokenizer: Literal["row", "column"] = "row"
    target: str | None = None
    seed: int = 0
    masking: Number = Field(0.0, ge=0, le=1)
    integer_levels: int = Field(0, ge=0)
    relabels: Literal["auto", "off", "none"] | bool | dict[str, str] | None = "auto"

    @model_validator(mode="after")
    def _one_table(self) -> TabularOptions:
        if (self.dataset is None) == (self.csv is None):
            raise ValueError(f"give exactly one of the options dataset: NAME ({', '.join(TABLES)}) or csv: PATH; "
                             "its rows fit the encoder")
        if self.dataset is not None and self.schema_:
            raise ValueError(f"the option schema applies to csv: tables; the built-in {self.dataset!r} has fixed "
                             "column kinds")
        return self


class TableOptions(Options):
    """``data.options`` of the built-in tables."""

    #: the seed of the table's train/val/test permutation
    seed: int = 0
    #: at most this many rows of the split
    size: int | None = Field(None, ge=1)
    #: the modality name the rows are given under
    modality: str = "tabular"
