"""HaloNet model family for MindCV (importing registers the models with MindCV's registry)."""
from .builder import ALL_BLOCKS, HaloNet, ModelSpec, StageSpec
from .halonet import (
    default_cfgs,
    eca_halonext_26ts,
    halonet_26t,
    halonet_50t,
    halonet_h0,
    halonet_h1,
    halonet_h2,
    halonet_h3,
    halonet_h4,
    halonet_h5,
    halonet_h6,
    halonet_h7,
    model_specs,
    sehalonet_33ts,
)

__all__ = [
    "ALL_BLOCKS", "HaloNet", "ModelSpec", "StageSpec", "default_cfgs", "model_specs",
    "halonet_50t", "halonet_26t", "sehalonet_33ts", "eca_halonext_26ts",
    "halonet_h0", "halonet_h1", "halonet_h2", "halonet_h3", "halonet_h4", "halonet_h5", "halonet_h6", "halonet_h7",
]
