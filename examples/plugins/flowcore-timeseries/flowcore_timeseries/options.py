"""Options of the timeseries modality and of its dataset, checked before torch is imported.

Each model's fields are the keyword arguments of its factory, with the factory's defaults;
flowcore.schema.Options refuses unknown keys, so a typo in a config is one clear error.
"""

from pydantic import Field, model_validator

from flowcore.schema import Options


class TimeseriesOptions(Options):
    """``modalities.timeseries`` in a config: the keyword arguments of ``Timeseries(...)``."""

    #: values per sequence
    length: int = Field(64, ge=1)
    #: values per token; must divide ``length``
    patch: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _patch_divides_length(self) -> "TimeseriesOptions":
        if self.length % self.patch:
            raise ValueError(f"patch {self.patch} must divide length {self.length}")
        return self


class DataOptions(Options):
    """``data.options`` of timeseries_waves: the keyword arguments of ``data.timeseries_waves(split, ...)``."""

    #: values per sequence (keep it equal to modalities.timeseries.length)
    length: int = Field(64, ge=1)
    #: items in the split (default: 4,000 train, 500 val, 500 test)
    size: int | None = Field(None, ge=1)
    #: a different seed gives different (still reproducible) items
    seed: int = 0
