"""The ``tabular`` modality: rows of a mixed-type table, RecTable-encoded.

Options (the config's ``modalities.tabular`` section, checked by
:class:`flowcore_tabular.options.TabularOptions`):

=============  =================================================================
``dataset``    a table of this plugin (adult, titanic, german_credit, wine,
               breast_cancer) whose train split fits the encoder, or
``csv``        a CSV file of your own (its rows fit the encoder)
``schema``     ``{column: kind}`` overriding the kinds inferred from ``csv``
               (numeric, integer, categorical, boolean, datetime)
``missing``    the cell texts that mean "missing" (default "", ?, NA, N/A, NaN, …)
``tokenizer``  ``row`` (one flat token per row, RecTable) or ``column`` (one token
               per column with column-id positions)
``target``     the column MLE predicts (default: the dataset's; for a CSV, the last)
``seed``       the split seed of ``dataset``, also the quantile fit's seed
``masking``    share of training rows that get random known columns (0 = off): trains
               the network for imputation as well (flag channels, MaskedColumnPath)
``integer_levels``  K > 0: an integer column with at most K distinct training values is
               one-hot encoded over them instead of quantile-normal (not RecTable's;
               ``flowcore_tabular.encoding``); 0 (default) = off
``relabels``   ``auto`` (default): discrete columns that relabel each other on the
               training rows (a bijection, every value seen often) are modelled once, the
               other decoded by lookup (``flowcore_tabular.relabel``); ``off``; or
               ``{column: source}`` to name them. ``schema.relabels`` shows the result
=============  =================================================================

The encoder is fitted at build time from these options alone (deterministically), so the
same config rebuilds the same modality for sampling and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from flowcore.modality import Metric, Modality
from flowcore_tabular.codec import TableCsv, read_table
from flowcore_tabular.datasets import load_table
from flowcore_tabular.encoding import TableBatch, TableEncoder, collate, split
from flowcore_tabular.path import MaskedColumnPath, MixedPriorPath
from flowcore_tabular.relabel import relabels_option
from flowcore_tabular.schema import DEFAULT_MISSING, Schema
from flowcore_tabular.tokenizers import TOKENIZERS


class Tabular(Modality):
    """A table's rows as RecTable vectors; see the module docstring for the options."""

    def __init__(self, dataset: str | None = None, csv: str | None = None, schema: Mapping[str, str] | None = None,
                 missing: Sequence[str] | None = None, tokenizer: str = "row", target: str | None = None,
                 seed: int = 0, masking: float = 0.0, integer_levels: int = 0,
                 relabels: str | bool | Mapping[str, str] | None = "auto"):
        missing = tuple(missing) if missing is not None else DEFAULT_MISSING
        if dataset is not None:
            table = load_table(dataset, seed)
            fitted, rows, default_target = table.schema, table.splits["train"], table.target
        else:
            fitted, rows = read_table(Path(csv), schema, missing)
            default_target = fitted.names[-1]
        fitted = relabels_option(fitted, rows, relabels)
        self.schema: Schema = fitted
        self.train_rows = rows
        self.target = target or default_target
        self.schema[self.target]  # names an existing column, or a DataError listing them
        self.encoder = TableEncoder(fitted, rows, seed=seed, integer_levels=int(integer_levels))
        self.masking = float(masking)
        self._tokenizer = TOKENIZERS[tokenizer](self.encoder, flags=self.masking > 0)
        self.codec = TableCsv(fitted)
        self.seed = seed

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def path(self) -> MixedPriorPath:
        tok = self._tokenizer
        if self.masking > 0:
            return MaskedColumnPath(tok.channel_kinds(), tok.column_map(), tok.flag_map(), self.masking)
        return MixedPriorPath(tok.channel_kinds())

    def collate(self, samples: Sequence[Mapping[str, Any]]) -> TableBatch:
        return collate(self.schema, samples)

    def split(self, batch: TableBatch) -> list[dict[str, Any]]:
        return split(self.schema, batch)

    def validate(self, sample: Any, where: str) -> Any:
        self.schema.check_row(sample, where)
        return sample

    def metrics(self) -> dict[str, Metric]:
        from flowcore_tabular.metrics import tabular_metrics

        return tabular_metrics(self.schema, self.target, self.train_rows, seed=self.seed)

    def given_mask(self, columns: Sequence[str]) -> torch.Tensor:
        """[L, C] bool: the token channels of ``columns`` (what imputation holds fixed)."""
        return self._tokenizer.given(columns)

