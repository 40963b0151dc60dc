"""Efficient (linear) attention normalises over the right axes and equals a naive form."""

from __future__ import annotations

import pytest
import torch

from convattn import ConfigError, create_attention
from convattn.attention.linear import normalize_keys, normalize_queries


def test_queries_normalised_over_channels_keys_over_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 4, dtype=torch.float64)   # (B, Nh, N, dkh), N != dkh
    rq, rk = normalize_queries(x), normalize_keys(x)
    ones = torch.ones(1, dtype=torch.float64)
    torch.testing.assert_close(rq.sum(-1), ones.expand(2, 3, 10))  # each query over channels
    torch.testing.assert_close(rk.sum(-2), ones.expand(2, 3, 4))   # each key channel over N
    assert not torch.allclose(rq.sum(-2), ones.expand(2, 3, 4))    # not the swapped axes
    assert not torch.allclose(rk.sum(-1), ones.expand(2, 3, 10))


def _naive(q, k, v, scale):
    """out_i = sum_j A_ij v_j with A_ij = sum_c rho_q(q_i)_c rho_k(k)_jc, per head."""
    b, n, d, hq, wq = q.shape
    s = d ** -0.25 if scale else 1.0
    out = torch.zeros(b, n, v.shape[2], hq * wq, dtype=q.dtype)
    for bi in range(b):
        for h in range(n):
            qt = q[bi, h].flatten(1).T * s            # (Nq, d)
            kt = k[bi, h].flatten(1).T * s            # (Nk, d)
            vt = v[bi, h].flatten(1).T                # (Nk, dv)
            rq = torch.exp(qt) / torch.exp(qt).sum(1, keepdim=True)
            rk = torch.exp(kt) / torch.exp(kt).sum(0, keepdim=True)
            a = rq @ rk.T                             # (Nq, Nk), rows sum to 1
            torch.testing.assert_close(a.sum(1), torch.ones(a.shape[0], dtype=q.dtype))
            out[bi, h] = (a @ vt).T
    return out.reshape(b, n, -1, hq, wq)


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("q_hw,kv_hw", [((3, 5), (3, 5)), ((4, 6), (2, 3))])
def test_linear_equals_naive(scale, q_hw, kv_hw):
    torch.manual_seed(1)
    kernel = create_attention("linear", heads=2, dk=8, dv=6, scale=scale)
    q = torch.randn(2, 2, 4, *q_hw, dtype=torch.float64) * 3
    k = torch.randn(2, 2, 4, *kv_hw, dtype=torch.float64) * 3
    v = torch.randn(2, 2, 3, *kv_hw, dtype=torch.float64)
    torch.testing.assert_close(kernel(q, k, v), _naive(q, k, v, scale))


def test_linear_cost_and_config():
    kernel = create_attention("linear", heads=2, dk=8, dv=6)
    c = kernel.cost((4, 6), (2, 3))
    assert c.macs == 2 * (6 + 24) * 4 * 3
    assert c.attention_bytes == ((24 + 6) * 8 + 2 * 4 * 3) * 4
    with pytest.raises(ConfigError) as err:
        create_attention("linear", heads=2, dk=8, dv=6, scale="no")
    assert err.value.field == "scale"
    with pytest.raises(ConfigError, match="allowed: scale"):
        create_attention("linear", heads=2, dk=8, dv=6, window=3)
