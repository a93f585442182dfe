"""Entry point of the built-in modalities. Tiny on purpose: specs only, no torch."""

from flowcore.builtins.options import LabeledGaussiansOptions, LabelOptions, PointsOptions, Toy2dOptions
from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec

TOY2D_SHAPES = ("eight_gaussians", "moons", "checkerboard", "spirals")


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="toy2d",
            factory="flowcore.builtins.toy2d:Toy2d",
            description="2-D points: one token per point, for flow experiments and tests",
            datasets=tuple(
                DatasetSpec(
                    name=shape,
                    modalities=("toy2d",),
                    factory=f"flowcore.builtins.toy2d:{shape}",
                    description=f"generated 2-D {shape.replace('_', ' ')}",
                    options=PointsOptions,
                )
                for shape in TOY2D_SHAPES
            ) + (
                DatasetSpec(
                    name="eight_gaussians_labeled",
                    modalities=("toy2d", "label"),
                    factory="flowcore.builtins.toy2d:eight_gaussians_labeled",
                    description="eight gaussians with each point's component index as a label (8 classes)",
                    options=LabeledGaussiansOptions,
                ),
            ),
            metrics=("sliced_wasserstein", "mmd"),
            has_codec=True,
            options=Toy2dOptions,
        ),
        ModalitySpec(
            name="label",
            factory="flowcore.builtins.label:Label",
            description="a categorical value as one token, one-hot scaled to +-1 (condition or target)",
            metrics=("accuracy", "histogram_tv"),
            has_codec=True,
            options=LabelOptions,
        ),
    ]
