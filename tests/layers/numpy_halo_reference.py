"""An independent float64 NumPy reference of halo attention, written from the semantics in
``tests/fixtures/halo_attn/README.md`` with explicit per-block loops (no shared code with the layer).

``extend_to_blocks=True`` applies this project's rule for sizes that are not a multiple of the
block size: keys/values at positions outside the image are exactly zero and unmasked, whether they
lie in the halo or in the extension to a multiple of the block size.
"""
import numpy as np


def conv1x1(x, w, bias=None, stride=1):
    """x (B, C, H, W), w (O, C, 1, 1) -> (B, O, ceil(H/s), ceil(W/s))."""
    x = x[:, :, ::stride, ::stride]
    y = np.einsum("bchw,oc->bohw", x, w[:, :, 0, 0])
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def halo_attention_reference(x, params, cfg, derived):
    """x (B, C, H, W) float64; params: timm state dict (numpy); cfg/derived: dicts as in the fixtures
    (``derived`` needs dim_head_qk, dim_head_v, win_size, block_size_ds, block_stride, use_avg_pool, scale).
    """
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    B, C, H, W = x.shape
    h = cfg["num_heads"]
    b, halo = cfg["block_size"], cfg["halo_size"]
    dqk, dv = derived["dim_head_qk"], derived["dim_head_v"]
    win, bq, s = derived["win_size"], derived["block_size_ds"], derived["block_stride"]
    scale = derived["scale"]
    nh, nw = -(-H // b), -(-W // b)

    q = conv1x1(x, p["q.weight"], p.get("q.bias"), stride=s)
    hq, wq = q.shape[2:]
    kv = conv1x1(x, p["kv.weight"], p.get("kv.bias"))
    # zero map covering the halo and the extension; k = v = 0 outside the image
    kv_pad = np.zeros((B, kv.shape[1], nh * b + 2 * halo, nw * b + 2 * halo))
    kv_pad[:, :, halo : halo + H, halo : halo + W] = kv
    q_pad = np.zeros((B, q.shape[1], nh * bq, nw * bq))
    q_pad[:, :, :hq, :wq] = q
    hrel, wrel = p["pos_embed.height_rel"], p["pos_embed.width_rel"]

    out = np.zeros((B, h * dv, nh * bq, nw * bq))
    for n in range(B):
        for head in range(h):
            kvh = kv_pad[n, head * (dqk + dv) : (head + 1) * (dqk + dv)]
            k_map, v_map = kvh[:dqk], kvh[dqk:]
            q_map = q_pad[n, head * dqk : (head + 1) * dqk]
            for r in range(nh):
                for c in range(nw):
                    qb = q_map[:, r * bq : (r + 1) * bq, c * bq : (c + 1) * bq]  # (dqk, bq, bq)
                    kb = k_map[:, r * b : r * b + win, c * b : c * b + win]  # (dqk, win, win)
                    vb = v_map[:, r * b : r * b + win, c * b : c * b + win]
                    qf = qb.reshape(dqk, -1).T  # (bq*bq, dqk)
                    content = qf @ kb.reshape(dqk, -1)  # (bq*bq, win*win)
                    rel = np.zeros((bq, bq, win, win))
                    for qy in range(bq):
                        for qx in range(bq):
                            qvec = qb[:, qy, qx]
                            for ky in range(win):
                                rel[qy, qx, ky, :] += qvec @ hrel[ky - qy + win - 1]
                            for kx in range(win):
                                rel[qy, qx, :, kx] += qvec @ wrel[kx - qx + win - 1]
                    rel = rel.reshape(bq * bq, win * win)
                    if cfg["scale_pos_embed"]:
                        logits = (content + rel) * scale
                    else:
                        logits = content * scale + rel
                    logits = logits - logits.max(-1, keepdims=True)
                    attn = np.exp(logits)
                    attn /= attn.sum(-1, keepdims=True)
                    ob = attn @ vb.reshape(dv, -1).T  # (bq*bq, dv)
                    out[n, head * dv : (head + 1) * dv, r * bq : (r + 1) * bq, c * bq : (c + 1) * bq] = ob.T.reshape(
                        dv, bq, bq
                    )
    out = out[:, :, :hq, :wq]
    if derived["use_avg_pool"]:
        ho, wo = hq // 2, wq // 2
        out = out[:, :, : 2 * ho, : 2 * wo].reshape(B, -1, ho, 2, wo, 2).mean(axis=(3, 5))
    return out
