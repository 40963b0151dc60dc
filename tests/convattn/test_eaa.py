"""The EAA block: shapes, the concat/replace formulas, E's layer, parameters, cost."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from convattn import ConfigError, MapSizeError, block_class, create_block
from convattn.blocks.eaa import EAABlock, token_grid

ATTENTIONS = ["local", "linformer", "linear", "full"]
SIZE = (5, 7)          # odd and non-square: catches transposed grids and dropped pixels


def _block(in_ch=8, out_ch=16, stride=1, size=SIZE, **cfg):
    cfg.setdefault("heads", 2)
    return create_block("eaa", in_ch, out_ch, stride, input_size=size, **cfg)


def _randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial running statistics and affine terms, so eval-mode BN is not ~identity."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


def _fuse_by_hand(block: EAABlock, z: torch.Tensor) -> torch.Tensor:
    """F = 1x1 conv (no bias) + eval BatchNorm, written out."""
    conv, bn = block.fuse[0], block.fuse[1]
    y = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], z)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (y - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]


def _unpatch(e: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Pixel (i, j) takes the token of its 2x2 patch (i // 2, j // 2)."""
    rows = torch.arange(hw[0]) // 2
    cols = torch.arange(hw[1]) // 2
    return e[:, :, rows][:, :, :, cols]


# -- shapes -----------------------------------------------------------------------

@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("mode", ["concat", "replace"])
@pytest.mark.parametrize("stride", [1, 2])
def test_shapes_for_each_mode_patch_attention(mode, patch, attention, stride):
    block = _block(stride=stride, mode=mode, patch=patch, attention=attention, window=3,
                   proj_dim=6)
    x = torch.randn(2, 8, *SIZE)
    y = block(x)
    ho, wo = math.ceil(SIZE[0] / stride), math.ceil(SIZE[1] / stride)
    assert y.shape == (2, 16, ho, wo)
    # E's own token grid: full size only for 1x1 patches at stride 1, else halved (ceil)
    e = block.evit(x)
    grid = SIZE if (patch, stride) == (1, 1) else (3, 4)
    assert e.shape == (2, block.dim, *grid)
    assert token_grid(patch, stride, *SIZE) == grid
    assert hasattr(block, "residual") == (mode == "concat")


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (5, 7), (7, 5), (1, 6)])
@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("attention", ["local", "linformer"])
def test_edge_map_sizes_all_run(size, patch, stride, attention):
    """EAA refuses no map size: 2x2 patches zero pad odd maps, local windows pad too."""
    block = _block(stride=stride, size=size, patch=patch, attention=attention, window=3)
    y = block(torch.randn(2, 8, *size))
    assert y.shape == (2, 16, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert torch.isfinite(y).all()


# -- the formulas -------------------------------------------------------------------

@pytest.mark.parametrize(("stride", "patch"), [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_concat_with_zeroed_e_is_f_of_basic_block_and_zeros(stride, patch):
    torch.manual_seed(0)
    block = _block(in_ch=8, out_ch=16, stride=stride, patch=patch, mode="concat",
                   attention="local", window=3)
    _randomise_bn(block)
    with torch.no_grad():
        for p in block.evit.parameters():
            p.zero_()
    block.eval()
    x = torch.randn(2, 8, *SIZE)
    assert torch.equal(block.evit(x), torch.zeros_like(block.evit(x)))
    # G(X) + X from an independently built basic block with the same weights
    basic = create_block("basic", 8, 16, stride, input_size=SIZE)
    basic.load_state_dict(block.residual.state_dict())
    basic.eval()
    with torch.no_grad():
        r = basic(x)
        zeros = torch.zeros(r.shape[0], block.dim, *r.shape[-2:])
        expected = _fuse_by_hand(block, torch.cat([r, zeros], dim=1))
        assert torch.allclose(block(x), expected, atol=1e-5)


@pytest.mark.parametrize(("stride", "patch"), [(1, 1), (1, 2), (2, 2)])
def test_concat_is_f_of_residual_and_e(stride, patch):
    """Y = F(concat(G(X) + X, E(X))), E's tokens copied onto their 2x2 patch at stride 1."""
    torch.manual_seed(0)
    block = _block(stride=stride, patch=patch, mode="concat", attention="full")
    _randomise_bn(block)
    block.eval()
    x = torch.randn(2, 8, *SIZE)
    with torch.no_grad():
        r = block.residual(x)
        e = block.evit(x)
        if (stride, patch) == (1, 2):
            e = _unpatch(e, SIZE)
        expected = _fuse_by_hand(block, torch.cat([r, e], dim=1))
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_replace_is_f_of_e_only():
    torch.manual_seed(0)
    block = _block(mode="replace", patch=2, attention="linear")
    _randomise_bn(block)
    block.eval()
    x = torch.randn(2, 8, *SIZE)
    with torch.no_grad():
        expected = _fuse_by_hand(block, _unpatch(block.evit(x), SIZE))
        assert torch.allclose(block(x), expected, atol=1e-5)
    # every parameter belongs to E or F: no hidden residual branch
    named = [n for n, _ in block.named_parameters()]
    assert all(n.startswith(("evit.", "fuse.")) for n in named)


def _layer_norm(t: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu = t.mean(-1, keepdim=True)
    var = t.var(-1, unbiased=False, keepdim=True)
    return (t - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


@pytest.mark.parametrize(("stride", "patch"), [(1, 1), (1, 2), (2, 1)])
def test_e_is_vil_prenorm_layer_with_full_attention(stride, patch):
    """E(X) = t + Attn(LN(t)), then + MLP(LN(t)), t = LN(embed(X)): written out naively."""
    torch.manual_seed(0)
    block = _block(stride=stride, patch=patch, attention="full", heads=2, dim=8, mlp_ratio=2)
    e = block.evit
    with torch.no_grad():
        for ln in (e.norm0, e.norm1, e.norm2):      # non-trivial LN affine terms
            ln.weight.normal_()
            ln.bias.normal_()
    x = torch.randn(2, 8, *SIZE)
    xp = F.pad(x, (0, SIZE[1] % 2, 0, SIZE[0] % 2)) if patch == 2 else x
    conv = e.embed
    z = F.conv2d(xp, conv.weight, conv.bias, conv.stride, conv.padding)
    b, d, h, w = z.shape
    t = _layer_norm(z.flatten(2).transpose(1, 2), e.norm0)          # (B, N, d)
    qkv = _layer_norm(t, e.norm1) @ e.qkv.weight.T + e.qkv.bias
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    dh = d // 2
    heads = []
    for i in range(2):
        s = slice(i * dh, (i + 1) * dh)
        att = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(dh), dim=-1)
        heads.append(att @ v[..., s])
    t = t + torch.cat(heads, -1) @ e.proj.weight.T + e.proj.bias
    fc1, fc2 = e.mlp[0], e.mlp[2]
    hidden = F.gelu(_layer_norm(t, e.norm2) @ fc1.weight.T + fc1.bias)
    t = t + hidden @ fc2.weight.T + fc2.bias
    expected = t.transpose(1, 2).reshape(b, d, h, w)
    assert torch.allclose(e(x), expected, atol=1e-5)


# -- parameters and cost ---------------------------------------------------------------

def _e_params(c_in: int, d: int, k: int, r: int) -> int:
    """Embedding kxk conv (bias) + 3 LayerNorms + qkv + proj + MLP (all with bias)."""
    return (k * k * c_in * d + d) + 3 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) \
        + (d * r * d + r * d) + (r * d * d + d)


def _count(block: torch.nn.Module) -> int:
    return sum(p.numel() for p in block.parameters())


def test_parameter_count_closed_form_concat_same_shape():
    c, d, r = 16, 8, 4
    block = create_block("eaa", c, c, 1, mode="concat", patch=1, attention="full", heads=2,
                         dim=d, mlp_ratio=r)
    basic = 2 * 9 * c * c + 2 * 2 * c                   # two 3x3 convs + two BNs, no shortcut
    fuse = (c + d) * c + 2 * c                          # 1x1 conv (no bias) + BN
    assert _count(block) == basic + _e_params(c, d, 1, r) + fuse


def test_parameter_count_closed_form_strided():
    c_in, c_out, r = 8, 16, 4
    concat = create_block("eaa", c_in, c_out, 2, mode="concat", patch=1, attention="linear",
                          heads=2, dim=8)
    basic = 9 * c_in * c_out + 9 * c_out * c_out + 2 * 2 * c_out + (c_in * c_out + 2 * c_out)
    assert _count(concat) == basic + _e_params(c_in, 8, 3, r) + (c_out + 8) * c_out + 2 * c_out
    # replace: default dim = out_ch, 2x2 patch embedding, no residual branch
    replace = create_block("eaa", c_in, c_out, 2, mode="replace", patch=2, attention="full",
                           heads=4)
    assert replace.dim == c_out
    assert _count(replace) == _e_params(c_in, c_out, 2, r) + c_out * c_out + 2 * c_out


def _flops(block, size):
    x = torch.randn(1, block.in_ch, *size)
    with FlopCounterMode(display=False) as counter:
        block(x)
    per_module = counter.get_flop_counts()
    kernel = sum(per_module.get(f"{type(block).__name__}.evit.kernel", {}).values())
    return counter.get_total_flops(), kernel


@pytest.mark.parametrize(("mode", "patch", "stride"),
                         [("concat", 1, 1), ("concat", 2, 1), ("concat", 1, 2),
                          ("replace", 2, 2), ("replace", 1, 1)])
def test_cost_outside_the_kernel_matches_flop_counter(mode, patch, stride):
    block = _block(stride=stride, mode=mode, patch=patch, attention="linear").eval()
    total, kernel_flops = _flops(block, SIZE)
    grid = token_grid(patch, stride, *SIZE)
    kernel_cost = block.evit.kernel.cost(grid, grid)
    cost = block.cost(*SIZE)
    assert cost.macs - kernel_cost.macs == (total - kernel_flops) // 2
    assert cost.attention_bytes == kernel_cost.attention_bytes
    if mode == "concat":     # the residual branch is counted by the basic block's formula
        assert cost.macs > block.residual.cost(*SIZE).macs


def test_cost_includes_full_attention_term():
    """Swapping the kernel changes the cost by exactly the kernels' own terms."""
    full = _block(mode="replace", patch=1, attention="full", heads=2, dim=8)
    linear = _block(mode="replace", patch=1, attention="linear", heads=2, dim=8)
    n = SIZE[0] * SIZE[1]
    outside = linear.cost(*SIZE).macs - linear.evit.kernel.cost(SIZE, SIZE).macs
    assert full.cost(*SIZE).macs == outside + n * n * (8 + 8)      # logits + mixing
    assert full.cost(*SIZE).attention_bytes == 2 * n * n * 4        # Nh N^2 float32


# -- validation ----------------------------------------------------------------------

@pytest.mark.parametrize(("cfg", "field", "words"), [
    ({"heads": 4, "dim": 6}, "heads", ["4", "dim=6"]),
    ({"mode": "add"}, "mode", ["concat", "replace"]),
    ({"attention": "relative"}, "attention", ["local", "linformer", "linear", "full"]),
    ({"patch": 3}, "patch", ["1", "2"]),
    ({"patch": True}, "patch", ["1", "2"]),
    ({"mlp_ratio": 0}, "mlp_ratio", ["positive"]),
    ({"window": 0}, "window", ["positive"]),
    ({"global_tokens": -1}, "global_tokens", [">= 0"]),
    ({"dim": 0}, "dim", ["positive"]),
])
def test_bad_values_name_their_key(cfg, field, words):
    for call in (lambda: EAABlock.resolve_config(8, 16, 1, dict(cfg)),
                 lambda: create_block("eaa", 8, 16, **cfg)):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.field == field
        for word in words:
            assert word in info.value.message


def test_linformer_needs_input_size_and_refuses_other_sizes():
    with pytest.raises(MapSizeError) as info:
        create_block("eaa", 8, 16, attention="linformer")
    assert "input_size" in str(info.value)
    block = _block(attention="linformer", size=(4, 4))
    block(torch.randn(1, 8, 4, 4))
    with pytest.raises(MapSizeError):
        block(torch.randn(1, 8, 5, 5))


@pytest.mark.parametrize("mode", ["concat", "replace"])
@pytest.mark.parametrize("out_ch", [3, 6, 16, 20, 33])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_default_dim_is_a_multiple_of_heads_near_the_mode_width(mode, out_ch, heads):
    cfg = EAABlock.resolve_config(8, out_ch, 1, {"mode": mode, "heads": heads})
    base = out_ch // 2 if mode == "concat" else out_ch
    assert cfg["dim"] % heads == 0 and cfg["dim"] >= heads
    assert abs(cfg["dim"] - base) <= max(heads / 2, heads - base)
    # the resolved cfg (dim written out) describes the same block
    assert EAABlock.resolve_config(8, out_ch, 1, dict(cfg)) == cfg
    block = create_block("eaa", 8, out_ch, mode=mode, heads=heads)
    assert block.dim == cfg["dim"] == block.evit.dim


def test_registered_as_eaa():
    assert block_class("eaa") is EAABlock
