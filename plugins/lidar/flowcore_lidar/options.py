"""Options of the lidar modality and its dataset: pydantic models, no torch.

The defaults are the factories' (flowcore_lidar.modality.Lidar, flowcore_lidar.data.street).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flowcore.schema import Number, Options

#: named sensors (flowcore_lidar.sensor.SENSORS): HDL-64E 64 x 1024, cpu32 32 x 256, cpu16 16 x 512
Preset = Literal["hdl64e", "cpu32", "cpu16"]


class SensorOptions(Options):
    """The sensor: a preset with any of its beams, columns and vertical field of view replaced."""

    sensor: Preset = "hdl64e"
    rows: int | None = Field(None, ge=1)
    cols: int | None = Field(None, ge=1)
    fov_up: Number | None = Field(None, ge=-90, le=90)
    fov_down: Number | None = Field(None, ge=-90, le=90)


class LidarOptions(SensorOptions):
    """``modalities.lidar``."""

    #: patch height x width of a token, in pixels; rows and cols must be multiples of them
    patch: tuple[int, int] | list[int] = (2, 8)
    #: the azimuth axis is circular (RoPE wraps at the full turn); false: a plain column axis
    circular: bool = True
    #: tokens carry a return mask; empty pixels take the nearest return's depth and reflectance
    drop_mask: bool = False


class StreetOptions(SensorOptions):
    """``data.options`` of lidar_street."""

    #: scans in the train split (default 2,000)
    n: int | None = Field(None, ge=1)
    #: scans in the val and test splits (default 200 and 500)
    held_out: int | None = Field(None, ge=1)
    #: scenes hold 0..max_cars cars (the label of a scan is its car count)
    max_cars: int = Field(6, ge=0, le=20)
    seed: int = 0
    #: keep the generated scans in flowcore's cache folder
    cache: bool = True
