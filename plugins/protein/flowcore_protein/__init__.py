"""flowcore-protein: protein backbones as per-residue rigid frames (ReQFlow-style quaternion flows)."""

__version__ = "0.1.0"
