"""Entry point of flowcore-lidar. Tiny on purpose: specs only, no torch, no trimesh."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_lidar.options import LidarOptions, StreetOptions


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="lidar",
            factory="flowcore_lidar.modality:Lidar",
            description="LiDAR scans as range images [2, H, W] (log-depth, reflectance) in [-1, 1]: patch tokens "
                        "with a circular azimuth, pixel space; KITTI .bin, PLY and PCD files",
            datasets=(
                DatasetSpec("lidar_street", ("lidar", "label"), "flowcore_lidar.data:street",
                            "simulated spinning-sensor scans of procedural streets (ray-cast with trimesh/Embree); "
                            "label = number of cars", options=StreetOptions),
            ),
            metrics=("bev_jsd", "bev_mmd", "chamfer", "range_histogram_tv", "ray_drop_gap", "car_count_gap"),
            has_codec=True,
            options=LidarOptions,
        )
    ]
