"""flowcore-shape: 3D shapes for flowcore."""
