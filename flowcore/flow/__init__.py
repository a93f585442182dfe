"""Modality-agnostic flow math on token tensors ``[B, L, C]`` with per-sample ``t [B]``.

Convention (docs/design.md): t = 0 is data, t = 1 is noise, x_t = (1 - t) x0 + t eps, the network
predicts v = eps - x0, and sampling integrates from t = 1 down to t = 0.

path        probability paths: linear, SO(3) quaternions, products (SE(3))
so3         unit-quaternion geometry the quaternion path is made of
timesteps   training timestep samplers, loss weights, static and Flux shifts
solvers     time grids and ODE solvers over multi-modality states
guidance    multi-modal classifier-free guidance, condition dropout
inversion   generate / invert / reconstruction error
loss        the rectified-flow training loss
reflow      minibatch OT coupling, reflow pairs on disk, k-rectified retraining, distillation

docs/flow.md is the guide.
"""
