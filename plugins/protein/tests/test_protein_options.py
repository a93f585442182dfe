"""The protein options (flowcore_protein.options) are the factories' options, with their defaults."""

import inspect

import pytest

from flowcore.errors import ConfigError
from flowcore.spec import resolve
from flowcore_protein.data import ideal, real_chains


def test_option_defaults_are_the_factories_defaults(registry):
    spec = registry.spec("protein")
    datasets = {d.name: d for d in spec.datasets}
    pairs = [(spec.options, resolve(spec.factory)), (datasets["protein_ideal"].options, ideal),
             (datasets["protein_chains"].options, real_chains)]
    for model, factory in pairs:
        params = inspect.signature(factory).parameters
        for name, field in model.model_fields.items():
            assert params[name].default == field.default, (factory, name)


def test_dataset_options_are_checked_together(registry):
    with pytest.raises(ConfigError, match=r"max_length \(30\) must be >= min_length \(40\)"):
        registry.dataset("protein_ideal").build("train", size=4, max_length=30)
