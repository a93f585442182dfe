"""The tabular options (flowcore_tabular.options) are the factories' options, with their defaults."""

import inspect

from flowcore.registry import get_registry
from flowcore.spec import resolve
from flowcore_tabular.datasets import TableDataset


def test_option_defaults_are_the_factories_defaults():
    spec = get_registry().spec("tabular")
    table = spec.datasets[0]
    for model, factory in [(spec.options, resolve(spec.factory)), (table.options, TableDataset)]:
        params = inspect.signature(factory).parameters
        for name, field in model.model_fields.items():
            assert params[field.alias or name].default == field.default, (factory, name)


def test_table_options_reach_the_dataset():
    dataset = get_registry().dataset("wine").build("train", size=5)
    assert len(dataset) == 5
