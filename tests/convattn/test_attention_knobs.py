"""The kernel knobs blocks pass through: Linformer global tokens, ``scale`` and
``share_kv`` at block level, and the EAA LayerNorm epsilon (issue 11)."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import ConfigError, create_attention, create_block


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _linformer_direct(kernel, q, k, v):
    """softmax over [G global keys ; E^T K] with values [G global values ; F^T V],
    written with explicit sums over the sequence and an explicit softmax."""
    b, nh, d, h, w = q.shape
    qt, kt, vt = (t.flatten(3).transpose(-1, -2) for t in (q, k, v))   # (B, Nh, N, d)
    e, f = kernel.proj_k, kernel.proj_v                                 # (N, k)
    kp = sum(e[i][None, None, :, None] * kt[:, :, i, None, :] for i in range(h * w))
    vp = sum(f[i][None, None, :, None] * vt[:, :, i, None, :] for i in range(h * w))
    keys = torch.cat([kernel.global_k.expand(b, -1, -1, -1), kp], dim=2)
    values = torch.cat([kernel.global_v.expand(b, -1, -1, -1), vp], dim=2)
    logits = qt @ keys.transpose(-1, -2) / math.sqrt(d)
    weights = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return (weights @ values).transpose(-1, -2).reshape(b, nh, -1, h, w)


@pytest.mark.parametrize("glo,share", [(1, True), (3, False)])
def test_linformer_with_global_tokens_equals_direct_computation(glo, share):
    torch.manual_seed(0)
    hw = (3, 5)
    kernel = create_attention("linformer", heads=2, dk=6, dv=4, input_size=hw, proj_dim=4,
                              share_kv=share, global_tokens=glo).double()
    with torch.no_grad():  # globals far from their small init, so they matter
        kernel.global_k.normal_()
        kernel.global_v.normal_()
    q, k = (torch.randn(2, 2, 3, *hw, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 2, 2, *hw, dtype=torch.float64)
    out = kernel(q, k, v)
    torch.testing.assert_close(out, _linformer_direct(kernel, q, k, v))
    without = create_attention("linformer", heads=2, dk=6, dv=4, input_size=hw, proj_dim=4,
                               share_kv=share).double()
    without.load_state_dict({n: t for n, t in kernel.state_dict().items()
                             if not n.startswith("global_")})
    assert not torch.allclose(out, without(q, k, v))  # the tokens change the output


def test_linformer_global_tokens_params_cost_and_validation():
    hw, heads, dk, dv = (4, 4), 2, 8, 6
    base = create_attention("linformer", heads=heads, dk=dk, dv=dv, input_size=hw, proj_dim=5)
    glo = create_attention("linformer", heads=heads, dk=dk, dv=dv, input_size=hw, proj_dim=5,
                           global_tokens=2)
    assert _count(glo) - _count(base) == heads * 2 * (dk // heads + dv // heads)
    n, k = 16, 5
    assert glo.cost(hw).macs == n * k * (dk + dv) + n * (k + 2) * (dk + dv)
    assert glo.cost(hw).attention_bytes == heads * n * (k + 2) * 4
    assert base.cost(hw).macs == 2 * n * k * (dk + dv)  # unchanged without globals
    with pytest.raises(ConfigError, match="global_tokens"):
        create_attention("linformer", heads=2, dk=4, dv=4, input_size=hw, global_tokens=-1)


def test_aa_block_takes_scale_share_kv_and_linformer_global_tokens():
    common = {"heads": 2, "dk": 8, "dv": 8, "input_size": (4, 4)}
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    outs = {}
    for scale in (True, False):
        torch.manual_seed(1)
        block = create_block("aa", 8, 16, attention="linear", scale=scale, **common).eval()
        outs[scale] = block(x)
        assert block.augmented.attn.cfg["scale"] is scale
    assert not torch.allclose(outs[True], outs[False])
    shared = create_block("aa", 8, 16, attention="linformer", proj_dim=6, **common)
    split = create_block("aa", 8, 16, attention="linformer", proj_dim=6, share_kv=False,
                         **common)
    assert _count(split) - _count(shared) == 16 * 6           # one more (N, k) projection
    glo = create_block("aa", 8, 16, attention="linformer", proj_dim=6, global_tokens=1,
                       **common)
    assert _count(glo) - _count(shared) == 2 * 1 * (4 + 4)
    with pytest.raises(ConfigError, match="used by: linear") as err:
        create_block("aa", 8, 16, attention="full", scale=False, **common)
    assert err.value.field == "scale"


def test_cvt_and_atc_take_scale_for_linear_attention_only():
    x = torch.randn(2, 16, 4, 4)
    for block_type in ("cvt", "atc"):
        outs = []
        for scale in (True, False):
            torch.manual_seed(0)
            block = create_block(block_type, 16, 16, heads=2, attention="linear",
                                 scale=scale).eval()
            outs.append(block(x))
        assert not torch.allclose(outs[0], outs[1]), block_type
        with pytest.raises(ConfigError) as err:
            create_block(block_type, 16, 16, attention="full", scale=False)
        assert err.value.field == "scale" and "linear" in err.value.message
        with pytest.raises(ConfigError, match="not a bool"):
            create_block(block_type, 16, 16, attention="linear", scale="no")
        with pytest.raises(ConfigError, match="allowed: .*scale"):  # unknown keys list it
            create_block(block_type, 16, 16, scael=False)


def test_eaa_knobs_ln_eps_share_kv_scale_and_linformer_global_tokens():
    common = {"heads": 2, "dim": 8, "input_size": (4, 4)}
    block = create_block("eaa", 8, 8, **common)
    eps = [m.eps for m in block.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert eps == [1e-6] * 3  # the default is Vision Longformer's
    old = create_block("eaa", 8, 8, ln_eps=1e-5, **common)
    assert [m.eps for m in old.modules() if isinstance(m, torch.nn.LayerNorm)] == [1e-5] * 3
    for bad in (0, -1e-6, 2.0, "1e-6", True):
        with pytest.raises(ConfigError) as err:
            create_block("eaa", 8, 8, ln_eps=bad, **common)
        assert err.value.field == "ln_eps"
    lin = create_block("eaa", 8, 8, attention="linformer", proj_dim=4, **common)
    assert lin.evit.kernel.global_tokens == 0 and lin.cfg["global_tokens"] == 0
    lin_glo = create_block("eaa", 8, 8, attention="linformer", proj_dim=4, global_tokens=1,
                           **common)
    assert _count(lin_glo) - _count(lin) == 2 * 1 * (4 + 4)
    split = create_block("eaa", 8, 8, attention="linformer", proj_dim=4, share_kv=False,
                         **common)
    assert _count(split) - _count(lin) == 16 * 4
    assert create_block("eaa", 8, 8, **common).evit.kernel.global_tokens == 1  # local: ViL
    x = torch.randn(2, 8, 4, 4)
    outs = []
    for scale in (True, False):
        torch.manual_seed(0)
        outs.append(create_block("eaa", 8, 8, attention="linear", scale=scale,
                                 **common).eval()(x))
    assert not torch.allclose(outs[0], outs[1])
    with pytest.raises(ConfigError) as err:
        create_block("eaa", 8, 8, share_kv="yes", **common)
    assert err.value.field == "share_kv"
