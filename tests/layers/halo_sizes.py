"""HaloAttention's derived sizes, written for the tests from the fixtures' README (section 1,
"Sizes", and section 2, "Stride modes"), independently of the package's ``halo_dims``.

The query/key rounding follows timm's ``make_divisible`` (timm/layers/helpers.py): round the
*total* qk width to the nearest multiple of the divisor (halves up), at least the divisor, then add
one more divisor if rounding lost more than 10 % of the value. The NumPy and torch references of
``tests/layers`` take their widths from here, so a wrong rounding in the package cannot agree with
them; ``test_halo_sizes_match_every_fixture`` holds this helper to timm's recorded ``derived``.
"""


def timm_make_divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding lost more than 10 %
        rounded += divisor
    return rounded


def reference_sizes(cfg):
    """cfg: the constructor arguments (as in a fixture's ``config``; missing keys take timm's
    defaults). Returns the keys of a fixture's ``derived`` that describe sizes."""
    dim_out = cfg.get("dim_out") or cfg["dim"]
    heads = cfg.get("num_heads", 8)
    block, halo, stride = cfg.get("block_size", 8), cfg.get("halo_size", 3), cfg.get("stride", 1)
    if cfg.get("dim_head"):
        dqk = cfg["dim_head"]
    else:
        dqk = timm_make_divisible(dim_out * cfg.get("qk_ratio", 1.0)) // heads
    dv = dim_out // heads
    # stride 2 attends at full resolution and average-pools afterwards when asked to (avg_down) or
    # when the block cannot be split into strided queries (odd block); otherwise the queries are strided
    use_avg_pool = stride == 2 and (bool(cfg.get("avg_down")) or block % 2 == 1)
    block_stride = 2 if stride == 2 and not use_avg_pool else 1
    return dict(
        dim_head_qk=dqk, dim_head_v=dv, dim_out_qk=heads * dqk, dim_out_v=heads * dv,
        win_size=block + 2 * halo, block_size_ds=block // block_stride, block_stride=block_stride,
        use_avg_pool=use_avg_pool, scale=dqk ** -0.5,
    )
