"""Modality-agnostic flow math on token tensors ``[B, L, C]`` with per-sample ``t [B]``.

Convention (DESIGN.md): t = 0 is data, t = 1 is noise, x_t = (1 - t) x0 + t eps, the network
predicts v = eps - x0, and sampling integrates from t = 1 down to t = 0.
"""
