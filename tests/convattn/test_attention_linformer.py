"""Linformer kernel: naive equality, fixed map size, projection sharing and cost."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import ConfigError, MapSizeError, create_attention


def _naive(kernel, q, k, v):
    """softmax(q (E^T K)^T / sqrt(dkh)) (F^T V) with explicit sums over the sequence."""
    b, n, d, h, w = q.shape
    qt, kt, vt = (t.flatten(3).transpose(-1, -2) for t in (q, k, v))   # (B, Nh, N, d)
    e, f = kernel.proj_k, kernel.proj_v                                 # (N, k)
    kp = sum(e[i][None, None, :, None] * kt[:, :, i, None, :] for i in range(h * w))
    vp = sum(f[i][None, None, :, None] * vt[:, :, i, None, :] for i in range(h * w))
    weights = (qt @ kp.transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    return (weights @ vp).transpose(-1, -2).reshape(b, n, -1, h, w)


@pytest.mark.parametrize("share", [True, False])
def test_linformer_equals_naive_on_non_square_map(share):
    torch.manual_seed(0)
    hw = (3, 5)
    kernel = create_attention("linformer", heads=2, dk=6, dv=4, input_size=hw, proj_dim=4,
                              share_kv=share).double()
    q = torch.randn(2, 2, 3, *hw, dtype=torch.float64)
    k = torch.randn(2, 2, 3, *hw, dtype=torch.float64)
    v = torch.randn(2, 2, 2, *hw, dtype=torch.float64)
    torch.testing.assert_close(kernel(q, k, v), _naive(kernel, q, k, v))


def test_linformer_refuses_other_sizes():
    kernel = create_attention("linformer", heads=2, dk=4, dv=4, input_size=(4, 6))
    q = torch.randn(1, 2, 2, 6, 4)
    with pytest.raises(MapSizeError, match="only runs at the map size it was built for"):
        kernel(q, q, q)
    with pytest.raises(MapSizeError, match="4x6"):
        kernel.check_size((8, 12), (8, 12))
    with pytest.raises(MapSizeError, match="needs input_size"):
        create_attention("linformer", heads=2, dk=4, dv=4)


def test_linformer_projections_shared_capped_and_validated():
    shared = create_attention("linformer", heads=2, dk=4, dv=4, input_size=(3, 4))
    assert shared.proj_dim == 12 and shared.proj_k.shape == (12, 12)  # 256 capped to N
    assert shared.proj_v is shared.proj_k
    assert sum(p.numel() for p in shared.parameters()) == 12 * 12
    separate = create_attention("linformer", heads=2, dk=4, dv=4, input_size=(8, 8),
                                proj_dim=16, share_kv=False)
    assert sum(p.numel() for p in separate.parameters()) == 2 * 64 * 16
    for key, bad in (("proj_dim", 0), ("proj_dim", 2.5), ("share_kv", "yes")):
        with pytest.raises(ConfigError) as err:
            create_attention("linformer", heads=2, dk=4, dv=4, input_size=(3, 4), **{key: bad})
        assert err.value.field == key


def test_linformer_cost_formula():
    kernel = create_attention("linformer", heads=4, dk=16, dv=8, input_size=(8, 8), proj_dim=32)
    c = kernel.cost((8, 8))
    assert c.macs == 2 * 64 * 32 * (16 + 8)
    assert c.attention_bytes == 4 * 64 * 32 * 4
    capped = create_attention("linformer", heads=1, dk=4, dv=4, input_size=(2, 2)).cost((2, 2))
    assert capped.macs == 2 * 4 * 4 * 8
