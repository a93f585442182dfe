"""The VecSet autoencoder (3DShape2VecSet): a surface point cloud <-> a set of M latent tokens -> occupancy.

    surface [B, N, 6] --embed--> [B, N, D]
    FPS(surface, M) --embed--> queries [B, M, D] --cross-attention to all N--> self-attention
      --> (mean, logvar) [B, M, C]                       (KL bottleneck)
    latent [B, M, C] --> [B, M, D] --self-attention--> keys/values
    points [B, Q, 3] --embed--> cross-attention to the latent --> occupancy logits [B, Q]

The embedding is xyz with sin/cos Fourier features at frequencies 2^k pi (k < ``freqs``),
concatenated with the unit normal. Training minimises binary cross-entropy of occupancy at
the sample's uniform and near-surface queries plus ``kl_weight`` times the per-element KL to
N(0, I). The flow sees ``(mean - shift) * scale`` per channel (running estimates, like the image
VAE). ``decode`` meshes each latent by marching cubes (:mod:`flowcore_shape.extract`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from flowcore.errors import DataError
from flowcore.modality import Autoencoder

#: the log-variance head's initial bias
LOGVAR_INIT = -8.0


class FourierEmbed(nn.Module):
    """xyz [..., 3] -> [..., 3 + 6 freqs]: the coordinates and sin/cos of 2^k pi xyz."""

    def __init__(self, freqs: int):
        super().__init__()
        self.register_buffer("bands", (2.0 ** torch.arange(freqs)) * math.pi, persistent=False)
        self.dim = 3 + 6 * freqs

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        angles = (xyz[..., None] * self.bands).flatten(-2)
        return torch.cat([xyz, angles.sin(), angles.cos()], -1)


class Attention(nn.Module):
    """Multi-head attention of x [B, L, D] to context [B, S, D] (x itself when context is None)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(width, width), nn.Linear(width, 2 * width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q = self.q(x).view(b, length, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-norm attention (to a context, or self-attention) and MLP, each residual."""

    def __init__(self, width: int, heads: int, cross: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width) if cross else None
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)
        x = x + self.attn(h, self.norm_context(context) if context is not None else h)
        return x + self.mlp(x)


def farthest_points(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] of farthest-point sampling of xyz [B, N, 3], starting at point 0."""
    b, n, _ = xyz.shape
    idx = torch.zeros(b, count, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, n), float("inf"), device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(1, count):
        last = xyz[rows, idx[:, i - 1]]
        dist = torch.minimum(dist, (xyz - last[:, None]).pow(2).sum(-1))
        idx[:, i] = dist.argmax(-1)
    return idx


class VecSetAE(nn.Module, Autoencoder):
    """VecSet KL autoencoder with an occupancy decoder.

    latents      M, tokens in the latent set (FPS anchors)
    channels     C, channels per latent token
    width        D, attention width
    heads        attention heads
    encoder_layers / decoder_layers   self-attention blocks after the encoder's cross-attention
                                      and before the decoder's
    freqs        Fourier frequency bands of the xyz embedding
    kl_weight    weight of the per-element KL term
    resolution   marching-cubes grid of ``decode`` (cells per axis)
    coarse       coarse grid of coarse-to-fine extraction (0 = evaluate the full grid)
    train_points / train_queries      random subsets of a sample's surface points and queries
                                      per training step (encoding uses all the points)
    """

    def __init__(self, latents: int = 64, channels: int = 8, width: int = 128, heads: int = 4,
                 encoder_layers: int = 1, decoder_layers: int = 2, freqs: int = 8, kl_weight: float = 1e-3,
                 resolution: int = 128, coarse: int = 32, train_points: int = 1024, train_queries: int = 1024,
                 stats_momentum: float = 0.01):
        super().__init__()
        self.latents, self.channels = latents, channels
        self.kl_weight, self.stats_momentum = kl_weight, stats_momentum
        self.resolution, self.coarse = resolution, coarse
        self.train_points, self.train_queries = max(train_points, latents), train_queries
        self.embed = FourierEmbed(freqs)
        self.point_in = nn.Linear(self.embed.dim + 3, width)
        self.encoder_cross = Block(width, heads, cross=True)
        self.encoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(encoder_layers))
        self.to_moments = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * channels))
        with torch.no_grad():  # the posterior starts narrow (std e^-4): at the prior's width it buries the latent
            self.to_moments[-1].bias[channels:].fill_(LOGVAR_INIT)
        self.latent_in = nn.Linear(channels, width)
        self.decoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(decoder_layers))
        self.query_in = nn.Linear(self.embed.dim, width)
        self.decoder_cross = Block(width, heads, cross=True)
        self.to_logit = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 1))
        self.register_buffer("latent_shift", torch.zeros(channels))
        self.register_buffer("latent_scale", torch.ones(channels))

    # ------------------------------------------------------------------ encoder

    def moments(self, surface: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """surface [B, N, 6] (xyz, normal) -> posterior mean, log-variance [B, M, C] (unscaled)."""
        if surface.dim() != 3 or surface.shape[-1] != 6 or surface.shape[1] < self.latents:
            raise DataError(f"shape autoencoder wants surface points [B, N >= {self.latents}, 6], "
                            f"got {tuple(surface.shape)}")
        xyz = surface[..., :3]
        tokens = self.point_in(torch.cat([self.embed(xyz), surface[..., 3:]], -1))
        anchors = farthest_points(xyz, self.latents)
        x = torch.gather(tokens, 1, anchors[..., None].expand(-1, -1, tokens.shape[-1]))
        x = self.encoder_cross(x, tokens)
        for block in self.encoder_blocks:
            x = block(x)
        mean, logvar = self.to_moments(x).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """batch (``surface`` [B, N, 6]) -> latent [B, M, C]: the posterior mean, shifted and scaled."""
        return (self.moments(batch["surface"])[0] - self.latent_shift) * self.latent_scale

    # ------------------------------------------------------------------ decoder

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent [B, M, C] -> the decoder's keys/values [B, M, D]."""
        x = self.latent_in(z)
        for block in self.decoder_blocks:
            x = block(x)
        return x

    def occupancy_logits(self, context: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """context [B, M, D], points [B, Q, 3] -> occupancy logits [B, Q] (> 0 inside)."""
        x = self.decoder_cross(self.query_in(self.embed(points)), context)
        return self.to_logit(x)[..., 0]

    def unscale(self, latent: torch.Tensor) -> torch.Tensor:
        return latent / self.latent_scale + self.latent_shift

    @torch.no_grad()
    def decode(self, latent: torch.Tensor | list[torch.Tensor]) -> dict[str, list[dict[str, torch.Tensor]]]:
        """latent [B, M, C] or a list of sets [M_i, C] (scaled, as ``encode`` gives) -> {"meshes": B unit-cube
        meshes} by marching cubes."""
        from flowcore_shape.extract import extract_mesh

        sets = list(latent) if isinstance(latent, (list, tuple)) else latent.unbind(0)
        meshes = []
        for z in sets:
            c = self.context(self.unscale(z[None]))[0]
            vertices, faces = extract_mesh(lambda p, c=c: self.occupancy_logits(c[None], p[None])[0],
                                           self.resolution, self.coarse, device=c.device)
            meshes.append({"vertices": vertices, "faces": faces})
        return {"meshes": meshes}

    # ------------------------------------------------------------------ training

    def loss(self, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
        """{"loss": bce + kl_weight kl, "bce", "kl", "accuracy"}; updates the running latent stats.

        Each step sees a random subset of the surface points (so farthest-point sampling also
        starts somewhere new) and of the queries.
        """
        surface = _subset(batch["surface"], self.train_points)
        queries = _subset(torch.cat([batch["queries"], batch["occupancy"][..., None]], -1), self.train_queries)
        mean, logvar = self.moments(surface)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.occupancy_logits(self.context(z), queries[..., :3])
        target = queries[..., 3]
        bce = F.binary_cross_entropy_with_logits(logits, target)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        if self.training:
            self._track(mean.detach())
        accuracy = ((logits > 0).float() == target).float().mean()
        return {"loss": bce + self.kl_weight * kl, "bce": bce.detach(), "kl": kl.detach(), "accuracy": accuracy}

    @torch.no_grad()
    def _track(self, mean: torch.Tensor) -> None:
        """Move the shift/scale buffers toward this batch's per-channel mean and 1/std."""
        m = self.stats_momentum
        flat = mean.reshape(-1, mean.shape[-1])
        self.latent_shift.lerp_(flat.mean(0), m)
        self.latent_scale.lerp_(1.0 / flat.std(0).clamp_min(1e-4), m)


def _subset(x: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` random rows of each sample of x [B, N, K] (all N, shuffled, when count >= N)."""
    order = torch.argsort(torch.rand(x.shape[:2], device=x.device), dim=1)[:, :count]
    return torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
