"""HaloNet variants for MindCV: a table of ``ModelSpec`` rows + one registered function per row.

Importing this module registers the models with ``mindcv.models.registry.register_model`` (nothing
is built at import). Adding a variant = adding a row to ``model_specs``, a ``default_cfgs`` entry and
a three-line registered function.

timm-derived variants (same block layout and parameter count as timm 1.0's ``byoanet.py``):

    halonet_50t       = timm halonet50ts        22,733,280 params
    halonet_26t       = timm halonet26t         12,480,288
    sehalonet_33ts    = timm sehalonet33ts      13,691,712
    eca_halonext_26ts = timm eca_halonext26ts   10,756,885
    halonet_h1        = timm halonet_h1          8,100,056  (= the paper's H1)

The paper's family H0..H7 (Vaswani et al., "Scaling Local Self-Attention for Parameter Efficient
Visual Backbones", CVPR 2021, table of b / h / r_v / r_b / stage-3 depth / image size) is built on the
structure of timm's ``halonet_h1``: 7x7 stride-2 stem conv (64) + 3x3/2 max-pool, ReLU, four stages
of self-attention blocks only, depths 3 / 3 / l3 / 3, strides 1 / 2 / 2 / 2. Details the paper table
does not pin down and that were chosen here (all checked against the paper's parameter counts,
see ``tests/models/test_param_counts.py``):

* base width w = 64 / 128 / 256 / 512 is the bottleneck (attention input, query/key) width;
  r_b scales the block *output* width (out = r_b * w, i.e. timm ``c = r_b * w``, ``br = 1 / r_b``);
  r_v scales the attention *value* width (values = r_v * w; query/key stay w).
  With these, H0 / H1 / H2 come out at 5.50 / 8.10 / 9.40 M (paper 5.5 / 8.1 / 9.4).
* H3..H7 additionally need a final 1x1 conv-BN-ReLU before the classifier to reach the paper's
  counts; its width was fitted to the nearest "round" channel count:
  H3 1024, H4 1280, H5 1536, H6 1536, H7 2048 (params then 11.84 / 19.10 / 30.72 / 43.46 / 67.43 M).
* heads per stage 4 / 8 / 8 / 8 for H0 and H2..H7 (as specified for this project); ``halonet_h1``
  keeps timm's 8 / 8 / 8 / 8 so that it is exactly timm's model (the heads only change the size of the
  relative-position tables: ~1.3 K parameters).
* ReLU (timm ``halonet_h1``), BatchNorm eps 1e-5, no channel attention, halo attention without
  qkv bias, strided-query downsampling (timm default).
* H7 at 600 px gives stage maps 150 / 75 / 38 / 19 that are not multiples of its block size 10;
  ``HaloAttention`` zero-extends them (timm would refuse such sizes).
"""
from typing import Callable, Dict, List, Optional

from mindcv.models import registry as _mindcv_registry
from mindcv.models.helpers import build_model_with_cfg
from mindcv.models.registry import register_model

from mindcv_halonet.weights.hub import DEFAULT_ENDPOINT, DEFAULT_FILENAME, DEFAULT_REVISION

from .builder import (
    ALL_BLOCKS, HaloNet, ModelSpec, StageSpec, check_output_stride, feature_info_of, validate_model_args,
)
from .pretrained import check_request, load_pretrained

__all__ = ["HaloNet", "default_cfgs", "model_specs", "PAPER_H_TABLE"]


# --------------------------------------------------------------------------------------------------
# the paper's H family: one row per model of the paper's table (+ the choices documented above)
# --------------------------------------------------------------------------------------------------

#: name -> (image size, block b, halo h, r_v, r_b, stage-3 depth, params M (paper), top-1 (paper))
PAPER_H_TABLE = {
    "halonet_h0": (256, 8, 3, 1.0, 0.5, 7, 5.5, 77.9),
    "halonet_h1": (256, 8, 3, 1.0, 1.0, 10, 8.1, 79.9),
    "halonet_h2": (256, 8, 3, 1.0, 1.25, 11, 9.4, 80.4),
    "halonet_h3": (320, 10, 3, 1.0, 1.5, 12, 11.8, 81.9),
    "halonet_h4": (384, 12, 2, 1.0, 3.0, 12, 19.1, 83.3),
    "halonet_h5": (448, 14, 2, 2.5, 2.0, 23, 30.7, 84.0),
    "halonet_h6": (512, 8, 4, 3.0, 2.75, 24, 43.4, 84.4),
    "halonet_h7": (600, 10, 3, 4.0, 3.5, 26, 67.4, 84.9),
}

#: final 1x1 conv width fitted to the paper's parameter counts (0 = no final conv, like timm halonet_h1)
_PAPER_H_NUM_FEATURES = {
    "halonet_h0": 0, "halonet_h1": 0, "halonet_h2": 0, "halonet_h3": 1024,
    "halonet_h4": 1280, "halonet_h5": 1536, "halonet_h6": 1536, "halonet_h7": 2048,
}


def _paper_h_spec(name: str, heads=(4, 8, 8, 8)) -> ModelSpec:
    _, block, halo, rv, rb, l3, _, _ = PAPER_H_TABLE[name]
    widths, depths, strides = (64, 128, 256, 512), (3, 3, l3, 3), (1, 2, 2, 2)
    stages = tuple(
        StageSpec(
            depth=d, out_chs=int(round(w * rb)), stride=s, bottle_ratio=1.0 / rb,
            attn_blocks=ALL_BLOCKS, attn_kwargs=dict(num_heads=nh),
        )
        for w, d, s, nh in zip(widths, depths, strides, heads)
    )
    return ModelSpec(
        stages=stages, stem_type="7x7", stem_chs=64, stem_pool=True, act_layer="relu",
        attn_kwargs=dict(block_size=block, halo_size=halo), value_ratio=rv,
        num_features=_PAPER_H_NUM_FEATURES[name],
    )


# --------------------------------------------------------------------------------------------------
# the variant table
# --------------------------------------------------------------------------------------------------

model_specs: Dict[str, ModelSpec] = dict(
    # timm halonet50ts
    halonet_50t=ModelSpec(
        stages=(
            StageSpec(3, 256, 1, 0.25),
            StageSpec(4, 512, 2, 0.25, attn_blocks=(3,), attn_kwargs=dict(num_heads=4)),
            StageSpec(6, 1024, 2, 0.25, attn_blocks=(1, 3, 5)),
            StageSpec(3, 2048, 2, 0.25, attn_blocks=(1,)),
        ),
        stem_type="tiered", stem_pool=True, act_layer="silu",
        attn_kwargs=dict(block_size=8, halo_size=3),
    ),
    # timm halonet26t
    halonet_26t=ModelSpec(
        stages=(
            StageSpec(2, 256, 1, 0.25),
            StageSpec(2, 512, 2, 0.25),
            StageSpec(2, 1024, 2, 0.25, attn_blocks=(1,)),
            StageSpec(2, 2048, 2, 0.25, attn_blocks=ALL_BLOCKS),
        ),
        stem_type="tiered", stem_pool=True, act_layer="relu",
        attn_kwargs=dict(block_size=8, halo_size=2),
    ),
    # timm sehalonet33ts
    sehalonet_33ts=ModelSpec(
        stages=(
            StageSpec(2, 256, 1, 0.25),
            StageSpec(3, 512, 2, 0.25, attn_blocks=(2,)),
            StageSpec(3, 1024, 2, 0.25, attn_blocks=(2,)),
            StageSpec(2, 1536, 2, 0.333, attn_blocks=ALL_BLOCKS),
        ),
        stem_type="tiered", stem_pool=False, act_layer="silu", channel_attn="se",
        attn_kwargs=dict(block_size=8, halo_size=3), num_features=1280,
    ),
    # timm eca_halonext26ts
    eca_halonext_26ts=ModelSpec(
        stages=(
            StageSpec(2, 256, 1, 0.25, group_size=16),
            StageSpec(2, 512, 2, 0.25, group_size=16),
            StageSpec(2, 1024, 2, 0.25, group_size=16, attn_blocks=(1,)),
            StageSpec(2, 2048, 2, 0.25, group_size=16, attn_blocks=ALL_BLOCKS),
        ),
        stem_type="tiered", stem_pool=True, act_layer="silu", channel_attn="eca",
        attn_kwargs=dict(block_size=8, halo_size=2, dim_head=16),
    ),
    # the paper's family; halonet_h1 is timm's halonet_h1 (8 heads in every stage)
    halonet_h0=_paper_h_spec("halonet_h0"),
    halonet_h1=_paper_h_spec("halonet_h1", heads=(8, 8, 8, 8)),
    halonet_h2=_paper_h_spec("halonet_h2"),
    halonet_h3=_paper_h_spec("halonet_h3"),
    halonet_h4=_paper_h_spec("halonet_h4"),
    halonet_h5=_paper_h_spec("halonet_h5"),
    halonet_h6=_paper_h_spec("halonet_h6"),
    halonet_h7=_paper_h_spec("halonet_h7"),
)


def _cfg(hf_hub_id: str = "", **kwargs) -> dict:
    """``hf_hub_id``: the Hugging Face Hub repository of timm's weights (``pretrained=True``, see
    ``models/pretrained.py``, ``weights/cache.py``); ``url`` is its resolve URL on the default endpoint (MindCV's registry reads
    "has pretrained weights" from it; the download itself honours HF_ENDPOINT). No sha256 / size is
    pinned: they were not verifiable when this was written, so they come from the Hub's metadata."""
    hub = {}
    if hf_hub_id:
        hub = dict(hf_hub_id=hf_hub_id, hf_revision=DEFAULT_REVISION, hf_filename=DEFAULT_FILENAME,
                   hf_sha256=None, hf_size=None)
    return {
        "url": f"{DEFAULT_ENDPOINT}/{hf_hub_id}/resolve/{DEFAULT_REVISION}/{DEFAULT_FILENAME}" if hf_hub_id else "",
        **hub,
        "num_classes": 1000,
        "input_size": (3, 256, 256),
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "first_conv": "stem.conv1.conv",
        "classifier": "head.fc",
        **kwargs,
    }


default_cfgs = {
    "halonet_50t": _cfg("timm/halonet50ts.a1h_in1k", crop_pct=0.94),
    "halonet_26t": _cfg("timm/halonet26t.a1h_in1k"),
    "sehalonet_33ts": _cfg("timm/sehalonet33ts.ra2_in1k", crop_pct=0.94),
    "eca_halonext_26ts": _cfg("timm/eca_halonext26ts.c1_in1k", crop_pct=0.94),
    **{name: _cfg(input_size=(3, row[0], row[0])) for name, row in PAPER_H_TABLE.items()},
}

_ALLOWED_KWARGS = ("drop_rate", "drop_path_rate", "zero_init_last", "output_stride")


def _check_features_args(name: str, features_only, out_indices) -> Optional[List[int]]:
    if not isinstance(features_only, bool):
        raise ValueError(f"features_only={features_only!r} is invalid; expected True or False")
    if not features_only:
        return None
    levels = [f["name"] for f in feature_info_of(model_specs[name])]
    num = len(levels)
    if out_indices is None:
        return list(range(num))
    if isinstance(out_indices, (str, bytes)) or not hasattr(out_indices, "__iter__"):
        raise ValueError(f"out_indices={out_indices!r} is invalid; expected a list of integers in [0, {num - 1}]")
    indices = list(out_indices)
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num]
    if not indices or bad or len(set(indices)) != len(indices):
        raise ValueError(
            f"out_indices={out_indices!r} is invalid for {name}; expected a non-empty list of distinct "
            f"integers in [0, {num - 1}] (feature levels: {levels})"
        )
    return indices


def _create_halonet(
    name: str,
    pretrained: bool,
    num_classes: int,
    in_channels: int,
    features_only: bool = False,
    out_indices: Optional[List[int]] = None,
    **kwargs,
) -> HaloNet:
    """Validate every argument, then build through MindCV's ``build_model_with_cfg``."""
    unknown = sorted(set(kwargs) - set(_ALLOWED_KWARGS))
    if unknown:
        raise TypeError(
            f"{name}() got unexpected keyword argument(s) {unknown}; accepted: pretrained, num_classes, "
            f"in_channels, features_only, out_indices, {', '.join(_ALLOWED_KWARGS)}"
        )
    if not isinstance(pretrained, bool):
        raise ValueError(f"pretrained={pretrained!r} is invalid; expected True or False")
    validate_model_args(num_classes, in_channels, kwargs.get("drop_rate", 0.0), kwargs.get("drop_path_rate", 0.0))
    check_output_stride(kwargs.get("output_stride", 32))
    indices = _check_features_args(name, features_only, out_indices)
    default_cfg = default_cfgs[name]
    if pretrained:
        check_request(name, default_cfgs, in_channels)
    # MindCV's build_model_with_cfg(pretrained=True) would download default_cfg["url"] as a MindSpore
    # checkpoint; timm's weights are loaded here instead (pretrained.py), into the plain network and
    # before MindCV's feature wrapper is built, with MindCV's load_pretrained semantics.
    # MindCV's FeatureExtractWrapper re-parents the cells, which renames every parameter
    # ("stem.conv1.conv.weight" -> "stem_conv1.conv.weight"); record the names first and put them back,
    # so that checkpoints of the plain model (e.g. create_model(..., checkpoint_path=...)) still load.
    built = []

    def build(**model_kwargs):
        net = HaloNet(variant=name, **model_kwargs)
        if pretrained:
            load_pretrained(net, name, default_cfg, num_classes, in_channels)
        built.append([(p, p.name) for p in net.get_parameters()])
        return net

    if not features_only:
        return build_model_with_cfg(
            build, False, default_cfg=default_cfg, spec=model_specs[name],
            num_classes=num_classes, in_channels=in_channels, **kwargs,
        )
    wrapper = build_model_with_cfg(
        build, False, default_cfg=default_cfg, spec=model_specs[name],
        num_classes=num_classes, in_channels=in_channels, features_only=True, out_indices=indices, **kwargs,
    )
    for param, original in built[0]:
        param.name = original
    return wrapper


def _register(fn: Callable) -> Callable:
    """``register_model`` + make MindCV's "has pretrained weights" mark (``is_model_pretrained``,
    ``list_models(pretrained=True)``) say exactly whether ``pretrained=True`` works here: set for the
    variants with timm weights, cleared for the others (also a stale mark of a replaced MindCV model)."""
    fn = register_model(fn)
    marks = getattr(_mindcv_registry, "_model_has_pretrained", None)
    if marks is not None:
        if default_cfgs[fn.__name__].get("hf_hub_id"):
            marks.add(fn.__name__)
        else:
            marks.discard(fn.__name__)
    return fn


# --------------------------------------------------------------------------------------------------
# registered model functions (MindCV contract)
# --------------------------------------------------------------------------------------------------


@_register
def halonet_50t(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-50T, timm ``halonet50ts``: tiered stem + max-pool, SiLU, ResNet-50 layout, halo b8/h3."""
    return _create_halonet("halonet_50t", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_26t(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-26T, timm ``halonet26t``: tiered stem + max-pool, ReLU, halo b8/h2 in stages 3-4."""
    return _create_halonet("halonet_26t", pretrained, num_classes, in_channels, **kwargs)


@_register
def sehalonet_33ts(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """SE-HaloNet-33TS, timm ``sehalonet33ts``: tiered stem (no pool), SiLU, SE, halo b8/h3, 1280-ch final conv."""
    return _create_halonet("sehalonet_33ts", pretrained, num_classes, in_channels, **kwargs)


@_register
def eca_halonext_26ts(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """ECA-HaloNeXt-26TS, timm ``eca_halonext26ts``: grouped (16) bottlenecks with ECA, SiLU, halo b8/h2 dim_head 16."""
    return _create_halonet("eca_halonext_26ts", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h0(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H0 (paper): 256 px, b8 h3, r_v 1.0, r_b 0.5, stage-3 depth 7."""
    return _create_halonet("halonet_h0", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h1(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H1 (paper) = timm ``halonet_h1``: 256 px, b8 h3, r_v 1.0, r_b 1.0, stage-3 depth 10."""
    return _create_halonet("halonet_h1", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h2(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H2 (paper): 256 px, b8 h3, r_v 1.0, r_b 1.25, stage-3 depth 11."""
    return _create_halonet("halonet_h2", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h3(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H3 (paper): 320 px, b10 h3, r_v 1.0, r_b 1.5, stage-3 depth 12."""
    return _create_halonet("halonet_h3", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h4(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H4 (paper): 384 px, b12 h2, r_v 1.0, r_b 3.0, stage-3 depth 12."""
    return _create_halonet("halonet_h4", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h5(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H5 (paper): 448 px, b14 h2, r_v 2.5, r_b 2.0, stage-3 depth 23."""
    return _create_halonet("halonet_h5", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h6(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H6 (paper): 512 px, b8 h4, r_v 3.0, r_b 2.75, stage-3 depth 24."""
    return _create_halonet("halonet_h6", pretrained, num_classes, in_channels, **kwargs)


@_register
def halonet_h7(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> HaloNet:
    """HaloNet-H7 (paper): 600 px, b10 h3, r_v 4.0, r_b 3.5, stage-3 depth 26."""
    return _create_halonet("halonet_h7", pretrained, num_classes, in_channels, **kwargs)
