"""The relative kernel's hand-written (in-place) backward against autograd and finite
differences, under autocast and on the meta device."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import create_attention


def _inputs(hw, heads=2, dkh=3, dvh=2, b=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = ((b, heads, dkh, *hw), (b, heads, dkh, *hw), (b, heads, dvh, *hw))
    return [torch.randn(s, generator=g, dtype=dtype, requires_grad=True) for s in shapes]


def _reference(kernel, q, k, v):
    """The same attention by plain autograd ops: einsum logits + gathered relative terms."""
    b, n, d, h, w = q.shape
    qs = q * d ** -0.5
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    # rel[i, j] = rW[xj - xi + W - 1] + rH[yj - yi + H - 1], (N, N, d)
    rel = (kernel.rel_w[xs[None, :] - xs[:, None] + w - 1]
           + kernel.rel_h[ys[None, :] - ys[:, None] + h - 1])
    qt, kt = qs.flatten(3), k.flatten(3)                                  # (B, Nh, d, N)
    logits = torch.einsum("bndi,bndj->bnij", qt, kt) + torch.einsum("bndi,ijd->bnij", qt, rel)
    out = torch.einsum("bnij,bndj->bndi", logits.softmax(-1), v.flatten(3))
    return out.reshape(b, n, v.shape[2], h, w)


@pytest.mark.parametrize("hw", [(3, 5), (4, 1), (1, 1)])
def test_gradients_equal_plain_autograd(hw):
    torch.manual_seed(0)
    kernel = create_attention("relative", heads=2, dk=6, dv=4, input_size=hw).double()
    q, k, v = _inputs(hw)
    leaves = [q, k, v, kernel.rel_w, kernel.rel_h]
    out = kernel(q, k, v)
    ref = _reference(kernel, q, k, v)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, leaves, grad)
    theirs = torch.autograd.grad(ref, leaves, grad)
    for name, a, b in zip("q k v rel_w rel_h".split(), ours, theirs, strict=True):
        torch.testing.assert_close(a, b, msg=f"gradient of {name}")


def test_gradcheck_against_finite_differences():
    torch.manual_seed(1)
    kernel = create_attention("relative", heads=2, dk=4, dv=4, input_size=(2, 3)).double()
    q, k, v = _inputs((2, 3), dkh=2, dvh=2, b=1)
    assert torch.autograd.gradcheck(
        lambda q, k, v, rw, rh: kernel(q, k, v), (q, k, v, kernel.rel_w, kernel.rel_h))


def test_bfloat16_autocast_matches_float32_within_bf16_precision():
    torch.manual_seed(2)
    kernel = create_attention("relative", heads=2, dk=8, dv=8, input_size=(4, 4))
    q, k, v = _inputs((4, 4), dkh=4, dvh=4, dtype=torch.float32)
    ref = kernel(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))   # as a bf16 qkv conv gives
        out = kernel(qb, kb, vb)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    out.float().pow(2).sum().backward()
    for leaf in (q, k, v, kernel.rel_w, kernel.rel_h):
        assert leaf.grad is not None and leaf.grad.dtype == leaf.dtype
        assert torch.isfinite(leaf.grad).all()


def test_softmax_weights_saved_once_and_meta_device_runs():
    """One (HW)^2 tensor is kept for backward (the weights), also on the meta device,
    where the cost model counts saved activations."""
    hw, heads = (4, 4), 2
    n = hw[0] * hw[1]
    with torch.device("meta"):
        kernel = create_attention("relative", heads=heads, dk=4, dv=4, input_size=hw)
        q, k, v = (torch.empty(3, heads, 2, *hw, requires_grad=True) for _ in range(3))
    saved: list[tuple[int, ...]] = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = kernel(q, k, v)
    assert out.shape == (3, heads, 2, *hw) and out.device.type == "meta"
    quadratic = [s for s in saved if math.prod(s) >= 3 * heads * n * n]
    assert quadratic == [(3, heads, n, n)]
