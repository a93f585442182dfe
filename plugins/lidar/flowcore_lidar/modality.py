"""The lidar modality: a scan is a range image [2, H, W] in [-1, 1] (log-depth, reflectance).

Pixel space, as R2Flow: no autoencoder, the flow moves patches of the range image itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from flowcore.errors import DataError
from flowcore.modality import Metric, Modality
from flowcore_lidar.codec import ScanCodec
from flowcore_lidar.metrics import metric_functions
from flowcore_lidar.sensor import VALID_FRACTION, make_sensor
from flowcore_lidar.tokenizer import CHANNELS, RangeTokenizer


class Lidar(Modality):
    """Scans of a spinning sensor. Options (``modalities.lidar``, checked by
    :class:`flowcore_lidar.options.LidarOptions`):

    sensor           preset: hdl64e (64 x 1024, +3..-25 deg), cpu32 (32 x 256), cpu16 (16 x 512)
    rows, cols       beams and columns, replacing the preset's
    fov_up, fov_down vertical field of view in degrees, replacing the preset's
    patch            [ph, pw] pixels per token
    circular         the azimuth wraps (RoPE period = the patch columns of a full turn)
    drop_mask        tokens carry a return mask beside depth and reflectance (the tokenizer's docstring)
    """

    def __init__(self, sensor: str = "hdl64e", rows: int | None = None, cols: int | None = None,
                 fov_up: float | None = None, fov_down: float | None = None, patch: Sequence[int] = (2, 8),
                 circular: bool = True, drop_mask: bool = False):
        self.sensor = make_sensor(sensor, rows, cols, fov_up, fov_down)
        if self.sensor.fov_up <= self.sensor.fov_down:
            raise DataError(f"lidar: fov_up ({self.sensor.fov_up}) must be above fov_down ({self.sensor.fov_down})")
        self.codec = ScanCodec(self.sensor)
        empty_below = float(self.sensor.depth_to_unit(VALID_FRACTION * self.sensor.min_depth))
        self._tokenizer = RangeTokenizer(self.sensor.shape, tuple(patch), circular, drop_mask, empty_below)

    @property
    def tokenizer(self) -> RangeTokenizer:
        return self._tokenizer

    def validate(self, sample, where: str) -> torch.Tensor:
        x = torch.as_tensor(sample)
        shape = (CHANNELS, *self.sensor.shape)
        if tuple(x.shape) != shape:
            raise DataError(f"{where}: a lidar scan of this sensor is {list(shape)} (channels, beams, columns), got "
                            f"{list(x.shape)}; give the dataset the modality's sensor options")
        if not x.is_floating_point():
            raise DataError(f"{where}: lidar scans are floats in [-1, 1], got {x.dtype}")
        if not torch.isfinite(x).all():
            raise DataError(f"{where}: scan holds NaN or infinite values")
        if x.min() < -1 - 1e-4 or x.max() > 1 + 1e-4:
            raise DataError(f"{where}: scan values span [{float(x.min()):.3g}, {float(x.max()):.3g}], outside [-1, 1]")
        return x.float()

    def metrics(self) -> dict[str, Metric]:
        return {name: Metric(name, fn, True, text) for name, (fn, text) in metric_functions(self.sensor).items()}

    def preview(self, samples: Sequence[torch.Tensor], path: Path) -> Path:
        """A PNG with a row per scan (up to 8): depth (near bright) over reflectance, and a bird's-eye
        view (+-40 m, colour = height); beside it each scan as a PLY for 3-D viewers
        (``<name>_NNNN.ply`` with ``<name>`` the PNG's stem, e.g. ``sample_preview_0000.ply``)."""
        from flowcore.io import atomic_path
        from flowcore_lidar.codec import write_points
        from flowcore_lidar.preview import write_preview

        images = [torch.as_tensor(s).clamp(-1, 1).numpy() for s in samples]
        path = Path(path).with_suffix(".png")
        for i, image in enumerate(images):
            with atomic_path(path.with_name(f"{path.stem}_{i:04d}.ply")) as tmp:
                write_points(self.sensor.unproject(image), tmp)
        return write_preview(self.sensor, images, path)
