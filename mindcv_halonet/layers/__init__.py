"""Layers of mindcv-halonet."""
from .activations import SiLU
from .halo_attention import HaloAttention, RelPosEmbed, halo_dims, make_divisible

__all__ = ["HaloAttention", "RelPosEmbed", "SiLU", "halo_dims", "make_divisible"]
