"""Full and relative-2D attention against naive computations by loops / einsum."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import ConfigError, MapSizeError, create_attention
from convattn.attention.relative import rel_to_abs


def _qkv(b, heads, dkh, dvh, q_hw, kv_hw=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    kv_hw = kv_hw or q_hw
    q = torch.randn(b, heads, dkh, *q_hw, generator=g, dtype=torch.float64)
    k = torch.randn(b, heads, dkh, *kv_hw, generator=g, dtype=torch.float64)
    v = torch.randn(b, heads, dvh, *kv_hw, generator=g, dtype=torch.float64)
    return q, k, v


def _naive(q, k, v, extra_logits=None):
    """softmax(q.k / sqrt(dkh) + extra) v over flattened row-major pixels, by einsum."""
    b, n, d, hq, wq = q.shape
    logits = torch.einsum("bndi,bndj->bnij", q.flatten(3), k.flatten(3)) / math.sqrt(d)
    if extra_logits is not None:
        logits = logits + extra_logits
    out = torch.einsum("bnij,bndj->bndi", logits.softmax(-1), v.flatten(3))
    return out.reshape(b, n, v.shape[2], hq, wq)


def test_rel_to_abs_matches_index_formula():
    length = 4
    x = torch.arange(3 * length * (2 * length - 1), dtype=torch.float64)
    x = x.reshape(3, length, 2 * length - 1)
    out = rel_to_abs(x)
    assert out.shape == (3, length, length)
    for i in range(length):
        for j in range(length):
            assert out[:, i, j].tolist() == x[:, i, j - i + length - 1].tolist()


@pytest.mark.parametrize("q_hw,kv_hw", [((4, 6), (4, 6)), ((4, 6), (2, 3)), ((1, 1), (1, 1))])
def test_full_equals_naive_including_strided_keys(q_hw, kv_hw):
    kernel = create_attention("full", heads=2, dk=6, dv=4)
    q, k, v = _qkv(2, 2, 3, 2, q_hw, kv_hw)
    torch.testing.assert_close(kernel(q, k, v), _naive(q, k, v))


def test_full_cost_formula():
    kernel = create_attention("full", heads=4, dk=32, dv=16)
    c = kernel.cost((8, 6), (4, 3))
    assert c.macs == 48 * 12 * (32 + 16)
    assert c.attention_bytes == 4 * 48 * 12 * 4
    assert kernel.cost((5, 5)) == kernel.cost((5, 5), (5, 5))


def _brute_relative(kernel, q_scaled):
    """rel[b, n, i, j] = q_i . (rW[xj - xi + W - 1] + rH[yj - yi + H - 1]) by a double loop."""
    b, n, _, h, w = q_scaled.shape
    rel = torch.zeros(b, n, h * w, h * w, dtype=q_scaled.dtype)
    for yi in range(h):
        for xi in range(w):
            for yj in range(h):
                for xj in range(w):
                    r = kernel.rel_w[xj - xi + w - 1] + kernel.rel_h[yj - yi + h - 1]
                    rel[:, :, yi * w + xi, yj * w + xj] = torch.einsum(
                        "bnd,d->bn", q_scaled[:, :, :, yi, xi], r)
    return rel


@pytest.mark.parametrize("hw", [(3, 5), (5, 2), (1, 4)])
def test_relative_logits_equal_brute_force_on_non_square_map(hw):
    h, w = hw
    torch.manual_seed(1)
    kernel = create_attention("relative", heads=3, dk=12, dv=6, input_size=hw).double()
    q, _, _ = _qkv(2, 3, 4, 2, hw)
    rw, rh = kernel.relative_logits(q)
    assert rw.shape == (2, 3, h, w, w) and rh.shape == (2, 3, h, w, h)
    combined = (rw.unsqueeze(-2) + rh.unsqueeze(-1)).reshape(2, 3, h * w, h * w)
    torch.testing.assert_close(combined, _brute_relative(kernel, q))


def test_relative_output_equals_naive_softmax_with_relative_logits():
    hw = (3, 5)
    torch.manual_seed(2)
    kernel = create_attention("relative", heads=3, dk=12, dv=6, input_size=hw).double()
    q, k, v = _qkv(2, 3, 4, 2, hw, seed=3)
    rel = _brute_relative(kernel, q / 2.0)  # q scaled by dkh^-0.5 = 1/2 before relative terms
    torch.testing.assert_close(kernel(q, k, v), _naive(q, k, v, rel))


def test_relative_tables_shapes_and_init():
    torch.manual_seed(0)
    kernel = create_attention("relative", heads=2, dk=128, dv=8, input_size=(20, 30))
    assert kernel.rel_w.shape == (59, 64) and kernel.rel_h.shape == (39, 64)
    # N(0, dkh^-0.5): std 0.125, mean 0 (not the appendix's mean = dkh^-0.5).
    assert abs(kernel.rel_w.std().item() - 0.125) < 0.01
    assert abs(kernel.rel_w.mean().item()) < 0.01


def test_relative_refuses_other_sizes_and_missing_size():
    kernel = create_attention("relative", heads=2, dk=4, dv=4, input_size=(3, 5))
    q, k, v = (t.float() for t in _qkv(1, 2, 2, 2, (5, 3)))
    with pytest.raises(MapSizeError, match="built for a 3x5 map"):
        kernel(q, k, v)
    with pytest.raises(MapSizeError, match="needs keys on the query grid"):
        kernel.check_size((3, 5), (2, 3))
    with pytest.raises(MapSizeError, match="needs input_size"):
        create_attention("relative", heads=2, dk=4, dv=4)
    with pytest.raises(ConfigError):
        create_attention("relative", heads=2, dk=4, dv=4, input_size=(0, 3))


def test_relative_cost_formula():
    kernel = create_attention("relative", heads=2, dk=8, dv=4, input_size=(3, 5))
    c = kernel.cost((3, 5))
    n = 15
    assert c.macs == n * n * 12 + n * (2 * 3 + 2 * 5 - 2) * 8
    assert c.attention_bytes == 2 * (n * n + n * (5 + 9)) * 4


def test_wrong_head_count_is_a_clear_error():
    kernel = create_attention("full", heads=2, dk=4, dv=4)
    q, k, v = (t.float() for t in _qkv(1, 4, 1, 1, (2, 2)))
    with pytest.raises(ValueError, match=r"expects q of shape \(B, 2, 2, H, W\)"):
        kernel(q, k, v)


@pytest.mark.parametrize("name", ["full", "linformer"])
def test_fused_attention_never_keeps_the_logits_for_backward(name):
    """The kernels hand SDPA contiguous tokens, so PyTorch picks a fused kernel: no tensor
    as large as the (B, Nh, Nq, Nk) attention weights is saved for the backward pass (the
    math fallback, taken for transposed views, saves exactly that)."""
    b, heads, hw = 2, 2, (16, 16)
    kwargs = {"input_size": hw, "proj_dim": 64} if name == "linformer" else {}
    kernel = create_attention(name, heads=heads, dk=16, dv=16, **kwargs)
    q, k, v = (torch.randn(b, heads, 8, *hw, requires_grad=True) for _ in range(3))
    nk = 64 if name == "linformer" else hw[0] * hw[1]
    weights = b * heads * hw[0] * hw[1] * nk
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t,
                                                  lambda t: t):
        out = kernel(q, k, v)
    out.sum().backward()
    assert max(saved) < weights, f"{name}: a saved tensor has {max(saved)} >= {weights}"
    assert q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("kv_hw", [(1, 1), (2, 2)])
def test_fused_attention_gets_row_major_strides_even_for_one_key(kv_hw):
    # A single key token (a 2x2 map pooled by kv_stride 2) is a view that counts as
    # contiguous with stride 1 on its token axis; CUDA's memory-efficient kernel refuses
    # it ("key is not correctly aligned (strideM)", an H100 running ATC candidates).
    from convattn.attention.base import dense, to_tokens

    q, k, v = _qkv(2, 3, 8, 8, (4, 4), kv_hw)
    tokens = to_tokens(k)
    fixed = dense(tokens)
    assert torch.equal(fixed, tokens)
    n = kv_hw[0] * kv_hw[1]
    assert fixed.stride() == torch.empty(tokens.shape).stride() == (3 * 8 * n, 8 * n, 8, 1)
    assert dense(fixed) is fixed  # already row-major: no copy
    out = create_attention("full", heads=3, dk=24, dv=24)(q, k, v)
    torch.testing.assert_close(out, _naive(q, k, v), rtol=1e-12, atol=1e-12)
