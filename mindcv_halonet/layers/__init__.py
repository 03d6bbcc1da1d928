"""Layers of mindcv-halonet."""
from .halo_attention import HaloAttention, RelPosEmbed, halo_dims, make_divisible

__all__ = ["HaloAttention", "RelPosEmbed", "halo_dims", "make_divisible"]
