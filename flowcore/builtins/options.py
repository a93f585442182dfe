"""Options of the built-in modalities and datasets: pydantic models, no torch.

The entry point (flowcore/builtins/plugin.py) declares them on its specs, so a config is
checked against them before torch or the modules they describe are imported.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flowcore.schema import Options


class Toy2dOptions(Options):
    """``modalities.toy2d`` takes no options of its own."""


class LabelOptions(Options):
    """``modalities.label``: the classes, as a count or by name."""

    #: classes 0..num_classes-1
    num_classes: int | None = Field(None, ge=2)
    #: class names (index = position); with num_classes, the two must agree
    classes: list[str] | None = None

    @model_validator(mode="after")
    def _classes_given(self) -> LabelOptions:
        if self.num_classes is None and self.classes is None:
            raise ValueError("the label modality needs num_classes or classes")
        if self.classes is not None:
            if len(self.classes) < 2:
                raise ValueError(f"classes: at least two classes are needed, got {self.classes}")
            if self.num_classes is not None and self.num_classes != len(self.classes):
                raise ValueError(f"num_classes is {self.num_classes} but {len(self.classes)} classes are named")
        return self


class PointsOptions(Options):
    """``data.options`` of the generated 2-D point sets."""

    #: points in the split (default: 20,000 train, 2,000 val and test)
    size: int | None = Field(None, ge=1)
    #: the split's points are drawn with seed 1000 * seed + split number
    seed: int = 0


class LabeledGaussiansOptions(PointsOptions):
    """``data.options`` of eight_gaussians_labeled."""

    #: component k has class k % classes (2, 4 or 8 divide the 8 components)
    classes: Literal[2, 4, 8] = 8
