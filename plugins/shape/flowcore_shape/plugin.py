"""Entry point of flowcore-shape. Tiny on purpose: specs only, no torch, no trimesh."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_shape.options import CgalOptions, PrimitivesOptions, ShapeOptions, WorldOptions

DATA = "flowcore_shape.data"


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="shape",
            factory="flowcore_shape.modality:Shape",
            description="3D meshes in the unit cube: a VecSet autoencoder (surface points -> a set of latent "
                        "tokens -> occupancy), marching cubes back to a mesh",
            datasets=(
                DatasetSpec("primitives", ("shape", "label"), f"{DATA}:primitives",
                            "generated boxes, spheres, cylinders, cones, tori, capsules and unions and "
                            "differences of two, randomly rotated; 8 classes, parameters recorded",
                            options=PrimitivesOptions),
                DatasetSpec("cgal", ("shape",), f"{DATA}:cgal",
                            "the CGAL example meshes (bunny, elephant, cow, ...), rotated and scaled per axis "
                            "for training", requires="Debian package libcgal-demo", options=CgalOptions),
                DatasetSpec("shapes_world", ("shape", "image", "label"), f"{DATA}:shapes_world",
                            "primitives with a 1x32x32 depth image of the same mesh from a random view and "
                            "the class", options=WorldOptions),
            ),
            metrics=("mmd_cd", "cov_cd", "nna_cd"),
            has_codec=True,
            has_autoencoder=True,
            options=ShapeOptions,
        )
    ]
