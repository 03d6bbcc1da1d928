"""The float64 halo-attention reference of ``numpy_halo_reference.py``, vectorised in PyTorch so that
autograd gives the reference *gradient* (the NumPy version has no backward).

Written from the same semantics (``tests/fixtures/halo_attn/README.md``), independently of the
layer's code: zero padding for the halo and the extension to a multiple of the block size, windows
by ``Tensor.unfold``, relative logits by gathering ``q . table^T`` at ``k - q + win - 1``.
``tests/layers/test_halo_attention_property.py`` checks its output against the NumPy loops on every
drawn configuration (to ~1e-12), so it cannot drift from that reference unnoticed. Needs torch.
"""
import torch
import torch.nn.functional as F


def conv1x1(x, w, bias=None, stride=1):
    y = torch.einsum("bchw,oc->bohw", x[:, :, ::stride, ::stride], w[:, :, 0, 0])
    return y if bias is None else y + bias[None, :, None, None]


def halo_attention_torch(x, params, cfg, derived):
    """x (B, C, H, W) float64 tensor; params: timm-named float64 tensors; cfg/derived as for the NumPy
    reference. Differentiable in x and in every parameter."""
    B, _, H, W = x.shape
    h, b, halo = cfg["num_heads"], cfg["block_size"], cfg["halo_size"]
    dqk, dv = derived["dim_head_qk"], derived["dim_head_v"]
    win, bq, s = derived["win_size"], derived["block_size_ds"], derived["block_stride"]
    nh, nw = -(-H // b), -(-W // b)

    q = conv1x1(x, params["q.weight"], params.get("q.bias"), stride=s)
    hq, wq = q.shape[2:]
    kv = conv1x1(x, params["kv.weight"], params.get("kv.bias"))
    kv = F.pad(kv, (halo, nw * b - W + halo, halo, nh * b - H + halo))  # zeros: halo + extension
    q = F.pad(q, (0, nw * bq - wq, 0, nh * bq - hq))

    # query blocks (B, h, nh, nw, bq*bq, dqk); key/value windows (B, h, nh, nw, win*win, d)
    qb = q.reshape(B, h, dqk, nh, bq, nw, bq).permute(0, 1, 3, 5, 4, 6, 2).reshape(B, h, nh, nw, bq * bq, dqk)
    windows = kv.unfold(2, win, b).unfold(3, win, b)  # (B, h*(dqk+dv), nh, nw, win, win)
    windows = windows.reshape(B, h, dqk + dv, nh, nw, win * win).permute(0, 1, 3, 4, 5, 2)
    k, v = windows[..., :dqk], windows[..., dqk:]

    content = qb @ k.transpose(-1, -2)  # (B, h, nh, nw, bq*bq, win*win)
    q5 = qb.reshape(B, h, nh, nw, bq, bq, dqk)
    grid_q = torch.arange(bq)
    grid_k = torch.arange(win)
    rel_index = grid_k[None, :] - grid_q[:, None] + win - 1  # (bq, win): [query coord, key coord]
    full_h = q5 @ params["pos_embed.height_rel"].T  # (..., qy, qx, 2*win-1)
    full_w = q5 @ params["pos_embed.width_rel"].T
    shape = full_h.shape[:-1] + (win,)
    idx_h = rel_index[:, None, :].expand(bq, bq, win).expand(shape)  # [qy, qx, ky] -> ky - qy + win - 1
    idx_w = rel_index[None, :, :].expand(bq, bq, win).expand(shape)  # [qy, qx, kx] -> kx - qx + win - 1
    rel_h = torch.gather(full_h, -1, idx_h)
    rel_w = torch.gather(full_w, -1, idx_w)
    rel = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(content.shape)

    scale = derived["scale"]
    logits = (content + rel) * scale if cfg["scale_pos_embed"] else content * scale + rel
    out = torch.softmax(logits, -1) @ v  # (B, h, nh, nw, bq*bq, dv)
    out = out.reshape(B, h, nh, nw, bq, bq, dv).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, h * dv, nh * bq, nw * bq)
    out = out[:, :, :hq, :wq]
    if derived["use_avg_pool"]:
        ho, wo = hq // 2, wq // 2
        out = out[:, :, : 2 * ho, : 2 * wo].reshape(B, -1, ho, 2, wo, 2).mean(dim=(3, 5))
    return out
