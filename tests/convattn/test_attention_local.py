"""Local 2D window attention equals full attention with the brute-force window mask."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import ConfigError, MapSizeError, create_attention


def _window_mask(h, w, window, n_glo):
    """(HW, G + HW): globals always, map key j iff its chunk is within 1 of query i's chunk."""
    mask = torch.zeros(h * w, n_glo + h * w, dtype=torch.bool)
    for yi in range(h):
        for xi in range(w):
            mask[yi * w + xi, :n_glo] = True
            for yj in range(h):
                for xj in range(w):
                    near = (abs(yi // window - yj // window) <= 1
                            and abs(xi // window - xj // window) <= 1)
                    mask[yi * w + xi, n_glo + yj * w + xj] = near
    return mask


def _masked_full(kernel, q, k, v):
    b, n, d, h, w = q.shape
    g = kernel.global_tokens
    keys = k.flatten(3).transpose(-1, -2)                       # (B, Nh, HW, d)
    vals = v.flatten(3).transpose(-1, -2)
    if g:
        keys = torch.cat([kernel.global_k.expand(b, -1, -1, -1), keys], dim=2)
        vals = torch.cat([kernel.global_v.expand(b, -1, -1, -1), vals], dim=2)
    logits = q.flatten(3).transpose(-1, -2) @ keys.transpose(-1, -2) / math.sqrt(d)
    logits = logits.masked_fill(~_window_mask(h, w, kernel.window, g), float("-inf"))
    out = logits.softmax(-1) @ vals                               # (B, Nh, HW, dv)
    return out.transpose(-1, -2).reshape(b, n, -1, h, w)


@pytest.mark.parametrize("hw,window,n_glo", [
    ((5, 7), 2, 1),   # non-square, neither side a multiple of w
    ((7, 4), 3, 2),   # several globals
    ((6, 6), 3, 1),   # exact multiple
    ((9, 2), 2, 0),   # one axis a single chunk, no globals
    ((3, 5), 7, 1),   # window larger than the map
    ((11, 10), 3, 1),  # 4 x 4 chunks: interior chunks with all 8 neighbours
    ((1, 1), 7, 1),
])
def test_local_equals_full_attention_with_window_mask(hw, window, n_glo):
    torch.manual_seed(0)
    kernel = create_attention("local", heads=2, dk=6, dv=4, window=window,
                              global_tokens=n_glo).double()
    if n_glo:
        with torch.no_grad():  # globals as large as the map keys so they matter
            kernel.global_k.normal_()
            kernel.global_v.normal_()
    q = torch.randn(2, 2, 3, *hw, dtype=torch.float64) * 2
    k = torch.randn(2, 2, 3, *hw, dtype=torch.float64) * 2
    v = torch.randn(2, 2, 2, *hw, dtype=torch.float64)
    torch.testing.assert_close(kernel(q, k, v), _masked_full(kernel, q, k, v))


def test_local_cost_counts_padded_chunks_and_windows():
    kernel = create_attention("local", heads=2, dk=8, dv=4, window=2, global_tokens=1)
    # 5x7 -> padded 6x8, each chunk sees a 6x6 window + 1 global.
    c = kernel.cost((5, 7))
    assert c.macs == 6 * 8 * (36 + 1) * 12
    assert c.attention_bytes == 2 * 6 * 8 * 37 * 4
    # A map within the window is one chunk: 3x5 queries, 15 keys + 1 global.
    small = create_attention("local", heads=2, dk=8, dv=4, window=7).cost((3, 5))
    assert small.macs == 15 * 16 * 12
    # Linear in HW: 4x the pixels (in whole chunks) -> 4x the work.
    big = create_attention("local", heads=2, dk=8, dv=4, window=7)
    assert big.cost((56, 56)).macs == 4 * big.cost((28, 28)).macs


def test_local_rejects_bad_config_and_strided_keys():
    with pytest.raises(ConfigError) as err:
        create_attention("local", heads=2, dk=4, dv=4, window=0)
    assert err.value.field == "window"
    with pytest.raises(ConfigError) as err:
        create_attention("local", heads=2, dk=4, dv=4, global_tokens=-1)
    assert err.value.field == "global_tokens"
    with pytest.raises(MapSizeError, match="query grid"):
        create_attention("local", heads=2, dk=4, dv=4).check_size((4, 4), (2, 2))


def test_local_without_globals_has_no_parameters():
    kernel = create_attention("local", heads=2, dk=4, dv=4, global_tokens=0)
    assert list(kernel.parameters()) == []
    kernel = create_attention("local", heads=2, dk=4, dv=6, global_tokens=3)
    assert kernel.global_k.shape == (2, 3, 2) and kernel.global_v.shape == (2, 3, 3)
