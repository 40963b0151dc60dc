"""Checks every registered attention kernel must pass: shapes on tiny and odd maps,
pixels staying in place through the heads, gradients reaching every parameter."""

from __future__ import annotations

import pytest
import torch

from convattn import Cost, create_attention, list_attention
from convattn.attention import merge_heads, split_heads

#: small cfg per kernel so tests stay fast (window 2 gives several chunks on small maps).
CFG: dict[str, dict] = {"local": {"window": 2}, "linformer": {"proj_dim": 6}}
SIZES = [(1, 1), (2, 2), (3, 3), (5, 5), (5, 7), (4, 6), (7, 3)]


def _make(name, heads, dk, dv, hw, **extra):
    return create_attention(name, heads=heads, dk=dk, dv=dv, input_size=hw,
                            **{**CFG.get(name, {}), **extra})


def test_all_five_kernels_registered():
    assert {"full", "relative", "local", "linformer", "linear"} <= set(list_attention())


@pytest.mark.parametrize("name", list_attention())
@pytest.mark.parametrize("hw", SIZES)
def test_runs_and_gradients_reach_every_parameter(name, hw):
    torch.manual_seed(0)
    kernel = _make(name, 2, 8, 6, hw)
    q = torch.randn(2, 2, 4, *hw, requires_grad=True)
    k = torch.randn(2, 2, 4, *hw, requires_grad=True)
    v = torch.randn(2, 2, 3, *hw, requires_grad=True)
    out = kernel(q, k, v)
    assert out.shape == (2, 2, 3, *hw)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    for pname, p in kernel.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname} on {hw}"
        assert torch.isfinite(p.grad).all()
        if hw[0] * hw[1] > 1 or name == "local":
            # On a 1x1 map a relative table only shifts the single logit of a
            # one-key softmax, so its gradient is exactly 0 there (and only there).
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname} on {hw}"
    c = kernel.cost(hw)
    assert isinstance(c, Cost) and c.macs > 0 and c.attention_bytes > 0


@pytest.mark.parametrize("name", list_attention())
@pytest.mark.parametrize("hw", [(3, 4), (1, 1), (2, 5)])
def test_pixel_marker_comes_back_at_the_same_pixel(name, hw):
    """q = k = 20 * one-hot(pixel), v = one-hot(pixel): each query attends to itself,
    so after split_heads -> kernel -> merge_heads channel p of each head is 1 at pixel p."""
    torch.manual_seed(0)
    h, w = hw
    n = h * w
    heads = 2
    extra = {"proj_dim": n} if name == "linformer" else {}
    kernel = _make(name, heads, heads * n, heads * n, hw, **extra)
    if name == "linformer":
        with torch.no_grad():  # identity sequence projection: keys keep their pixels
            kernel.proj_k.copy_(torch.eye(n))
            if kernel.proj_v is not kernel.proj_k:
                kernel.proj_v.copy_(torch.eye(n))
    marker = torch.eye(n).reshape(n, h, w)                 # channel p is 1 at pixel p only
    x = marker.repeat(heads, 1, 1).unsqueeze(0)           # (1, heads*n, H, W)
    qk = split_heads(20 * x, heads)
    with torch.no_grad():
        out = merge_heads(kernel(qk, qk, split_heads(x, heads)))
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, atol=0.02, rtol=0)
