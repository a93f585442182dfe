"""flowcore-lidar: LiDAR range images for flowcore."""
