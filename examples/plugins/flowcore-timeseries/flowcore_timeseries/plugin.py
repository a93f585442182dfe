"""Entry point of the timeseries plugin: specs only, no torch, so `flowcore plugins` stays fast.

The factories are "module:attr" strings; flowcore imports them when the modality or the
dataset is first built. The options models come from a module without torch, so a config is
checked before anything heavy is imported.
"""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_timeseries.options import DataOptions, TimeseriesOptions


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="timeseries",
            factory="flowcore_timeseries.modality:Timeseries",
            description="1-D sequences of float values, a patch of values per token",
            datasets=(
                DatasetSpec(
                    name="timeseries_waves",
                    modalities=("timeseries",),
                    factory="flowcore_timeseries.data:timeseries_waves",
                    description="noisy sine waves of 1 to 4 cycles (64 values)",
                    options=DataOptions,
                ),
            ),
            metrics=("spectrum_distance",),
            has_codec=True,
            options=TimeseriesOptions,
        )
    ]
