"""AAConv2d and the ``aa`` block (Bello et al. 2019)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convattn import ConfigError, MapSizeError, block_class, create_block
from convattn.blocks.aa import AAConv2d, attention_size

SIZES = [(1, 1), (2, 2), (3, 3), (5, 7), (7, 5)]
KERNELS = ["full", "relative", "linear", "local", "linformer"]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def aa_closed_form(fin: int, fout: int, k: int, dk: int, dv: int, heads: int,
                   hw: tuple[int, int] | None) -> int:
    """blocks.md: conv path, qkv conv, head-mixing conv (all with bias) + relative tables."""
    tables = (2 * hw[0] - 1 + 2 * hw[1] - 1) * (dk // heads) if hw else 0
    return (fin * (fout - dv) * k * k + (fout - dv) + fin * (2 * dk + dv) + (2 * dk + dv)
            + dv * dv + dv + tables)


# -- parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("stride,pool,att_hw", [(1, False, (5, 7)), (2, False, (3, 4)),
                                                (1, True, (3, 4)), (2, True, (2, 2))])
def test_parameter_count_closed_form(stride, pool, att_hw):
    """Relative tables are sized for the map the attention runs on (H != W)."""
    layer = AAConv2d(12, 40, 3, stride, dk=16, dv=8, heads=4, attention="relative",
                     pool=pool, input_size=(5, 7))
    assert attention_size((5, 7), stride, pool) == att_hw
    assert n_params(layer) == aa_closed_form(12, 40, 3, 16, 8, 4, att_hw)
    assert layer.attn.rel_w.shape == (2 * att_hw[1] - 1, 4)
    assert layer.attn.rel_h.shape == (2 * att_hw[0] - 1, 4)


def test_fully_attentional_has_no_conv_path():
    layer = AAConv2d(12, 16, 3, dk=8, dv=16, heads=4, attention="full")
    assert layer.conv is None
    assert n_params(layer) == aa_closed_form(12, 16, 3, 8, 16, 4, None)
    assert layer(torch.randn(2, 12, 3, 5)).shape == (2, 16, 3, 5)


# The seed slides' WRN (width 8): 2 blocks per stage, widths 128/256/512, convs WITH bias.
# One 3x3 conv per block is augmented, 6 layers in all; the parameter change does not depend
# on Fin (2dk - 8dv = 0 at dk = 2 Fout, dv = Fout / 2) so it is the same for either conv.
SEED_LAYERS = [(16, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]


def test_seed_wrn_gains_180096_parameters():
    gain = 0
    with torch.device("meta"):
        for fin, fout in SEED_LAYERS:
            aa = AAConv2d(fin, fout, 3, dk=2 * fout, dv=fout // 2, heads=8, attention="full",
                          position="sine")  # the seed used a parameter-free sine encoding
            gain += n_params(aa) - n_params(nn.Conv2d(fin, fout, 3, padding=1, bias=True))
    assert gain == 180_096


def test_seed_wrn_gain_at_block_level():
    """Our ``wide`` convs are bias-free (BN follows), so swapping the block adds the 6
    plain-conv biases the seed's convs had on top of the seed's 180,096."""
    gain = 0
    with torch.device("meta"):
        for i, (fin, fout) in enumerate(SEED_LAYERS):
            stride = 2 if i % 2 == 0 else 1
            aa = create_block("aa", fin, fout, stride, residual="wide", dk=2 * fout,
                              dv=fout // 2, heads=8, attention="full")
            gain += n_params(aa) - n_params(create_block("wide", fin, fout, stride))
    assert gain == 180_096 + sum(fout for _, fout in SEED_LAYERS)


# -- structure ----------------------------------------------------------------------------

def test_qkv_is_one_1x1_conv():
    layer = AAConv2d(12, 40, 3, dk=16, dv=8, heads=4, attention="relative", input_size=(4, 6))
    assert isinstance(layer.qkv, nn.Conv2d)
    assert layer.qkv.kernel_size == (1, 1)
    assert layer.qkv.in_channels == 12 and layer.qkv.out_channels == 2 * 16 + 8
    assert layer.proj.kernel_size == (1, 1) and layer.proj.out_channels == 8
    assert layer.conv.kernel_size == (3, 3) and layer.conv.out_channels == 40 - 8
    # the only 1x1 convs are qkv and the head mixing
    ones = [m for m in layer.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert ones == [layer.qkv, layer.proj]


def test_coord_position_widens_qkv_input():
    layer = AAConv2d(12, 40, 3, dk=16, dv=8, heads=4, attention="full", position="coord")
    assert layer.qkv.in_channels == 14


@pytest.mark.parametrize("kernel", ["full", "relative", "local"])
def test_marker_comes_back_at_its_pixel(kernel):
    """q = k = c * one-hot(pixel) makes every query attend to itself only; then the
    attention path must return v at the SAME pixel and channel (head split/merge, kernel
    and concat order), for a non-square map."""
    h, w, heads = 3, 4, 2
    n = h * w
    dk, dv, fout = heads * n, 2 * heads, 2 * heads + 3
    fin = n + 2
    layer = AAConv2d(fin, fout, 3, dk=dk, dv=dv, heads=heads, attention=kernel,
                     input_size=(h, w))
    torch.manual_seed(0)
    code = torch.eye(n).view(n, h, w)                          # channel p is 1 at pixel p
    x = torch.cat([code, torch.randn(2, h, w)]).unsqueeze(0)   # (1, n + 2, h, w)
    with torch.no_grad():
        for p in layer.attn.parameters():                       # relative tables, global tokens
            p.zero_()
        wq = torch.zeros(2 * dk + dv, fin)
        for head in range(heads):
            for part in (0, 1):                                 # q then k
                rows = slice(part * dk + head * n, part * dk + (head + 1) * n)
                wq[rows, :n] = 10.0 * torch.eye(n)
        wq[2 * dk:, n:] = torch.randn(dv, 2)                    # v: pixel-unique values
        layer.qkv.weight.copy_(wq.view(2 * dk + dv, fin, 1, 1))
        layer.qkv.bias.zero_()
        layer.qkv.bias[2 * dk:] = torch.arange(dv, dtype=torch.float32)  # channel-unique
        layer.proj.weight.copy_(torch.eye(dv).view(dv, dv, 1, 1))
        layer.proj.bias.zero_()
        v = F.conv2d(x, layer.qkv.weight, layer.qkv.bias)[:, 2 * dk:]
        out = layer(x)
    torch.testing.assert_close(out[:, fout - dv:], v, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pool", [False, True])
def test_stride_runs_attention_on_the_avg_pooled_grid(pool):
    """Stride 2 = attention of the same weights on the 3x3/stride-2 average-pooled input
    (then bilinear upsampling when pool=True); the conv path is a strided conv."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 7, 5)
    strided = AAConv2d(8, 16, 3, 2, dk=8, dv=8, heads=2, attention="relative", pool=pool,
                       input_size=(7, 5))
    pooled = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)            # (4, 3)
    plain = AAConv2d(8, 16, 3, 1, dk=8, dv=8, heads=2, attention="relative", pool=pool,
                     input_size=(4, 3))
    plain.load_state_dict(strided.state_dict())
    out = strided(x)
    assert out.shape == (2, 16, 4, 3)
    torch.testing.assert_close(out[:, 8:], plain(pooled)[:, 8:])
    torch.testing.assert_close(out[:, :8], F.conv2d(x, strided.conv.weight, strided.conv.bias,
                                                     stride=2, padding=1))


def test_pool_upsamples_attention_bilinearly():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 5)
    pooled_layer = AAConv2d(8, 16, 3, dk=8, dv=8, heads=2, attention="full", pool=True)
    flat = AAConv2d(8, 16, 3, dk=8, dv=8, heads=2, attention="full")
    flat.load_state_dict(pooled_layer.state_dict())
    small = flat(F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))[:, 8:]   # (3, 3)
    expected = F.interpolate(small, size=(6, 5), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pooled_layer(x)[:, 8:], expected)


@pytest.mark.parametrize("residual,where,fout,fin", [
    ("basic", "conv1", 40, 16), ("bottleneck", "conv2", 10, 10), ("wide", "conv1", 40, 16)])
def test_placement_and_depths(residual, where, fout, fin):
    """Paper placement; dk, dv from kappa, upsilon times the AUGMENTED conv's channels."""
    block = create_block("aa", 16, 40, residual=residual, kappa=0.4, upsilon=0.2, heads=2,
                         attention="full", expansion=4)
    aug = getattr(block.body, where)
    assert isinstance(aug, AAConv2d) and aug is block.augmented
    assert (aug.in_ch, aug.out_ch) == (fin, fout)
    # nearest multiple of heads=2, at least one per head
    assert aug.dk == 2 * max(1, round(0.4 * fout / 2))
    assert aug.dv == 2 * max(1, round(0.2 * fout / 2))
    assert aug.dk % 2 == 0 and aug.dv % 2 == 0
    others = [m for name, m in block.body.named_children() if name != where]
    assert not any(isinstance(m, AAConv2d) for m in others)


# -- every block, kernel and map size -------------------------------------------------------

def _cfgs():
    for residual in ("basic", "bottleneck", "wide"):
        for kernel in KERNELS:
            yield residual, kernel, "none", False
    for position in ("sine", "coord", "learned"):
        yield "basic", "full", position, False
    yield "basic", "relative", "relative", True
    yield "bottleneck", "linear", "none", True
    yield "wide", "local", "learned", True


@pytest.mark.parametrize("residual,kernel,position,pool", list(_cfgs()))
def test_every_kernel_runs_or_refuses_on_every_map(residual, kernel, position, pool):
    torch.manual_seed(0)
    cfg = dict(residual=residual, attention=kernel, position=position, pool=pool, dk=8, dv=8,
               heads=2, expansion=2)
    if kernel == "local":
        cfg["window"] = 3
    for stride in (1, 2):
        for hw in SIZES:
            try:
                block_class("aa").resolve_config(8, 16, stride, {**cfg, "input_size": hw})
            except (ConfigError, MapSizeError):
                with pytest.raises((ConfigError, MapSizeError)):
                    create_block("aa", 8, 16, stride, input_size=hw, **cfg)
                continue
            block = create_block("aa", 8, 16, stride, input_size=hw, **cfg)
            y = block(torch.randn(2, 8, *hw))
            assert y.shape == (2, 16, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
            (y * torch.randn_like(y)).sum().backward()
            for name, p in block.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), (name, stride, hw)
            assert block.cost(*hw).macs > 0


# -- cost -----------------------------------------------------------------------------------

GRIDS = [(1, False, (5, 7)), (2, False, (5, 7)), (1, True, (6, 6)), (2, True, (7, 5))]
# every residual x kernel once, cycling through the stride/pool/size cases, plus every
# case for one pair: keeps the test fast while each piece meets each case somewhere.
COST_CASES = ([(res, kern, *GRIDS[(i + j) % 4]) for i, res in enumerate(("basic", "bottleneck",
               "wide")) for j, kern in enumerate(KERNELS)]
              + [("bottleneck", "relative", *grid) for grid in GRIDS])


@pytest.mark.parametrize("residual,kernel,stride,pool,hw", COST_CASES)
def test_cost_matches_flop_counter_outside_the_kernel(residual, kernel, stride, pool, hw):
    """Every conv and linear layer is counted exactly; the kernel reports its own cost."""
    block = create_block("aa", 8, 16, stride, residual=residual, attention=kernel, pool=pool,
                         dk=8, dv=8, heads=2, expansion=2, input_size=hw).eval()
    with FlopCounterMode(display=False) as counter:
        block(torch.randn(1, 8, *hw))
    where = "conv2" if residual == "bottleneck" else "conv1"
    in_kernel = sum(counter.get_flop_counts().get(f"AA.body.{where}.attn", {}).values())
    aug = block.augmented
    att_hw = attention_size(hw, stride, pool)
    kernel_cost = aug.attn.cost(att_hw, att_hw)
    cost = block.cost(*hw)
    assert cost.macs - kernel_cost.macs == (counter.get_total_flops() - in_kernel) // 2
    assert (counter.get_total_flops() - in_kernel) % 2 == 0
    assert cost.attention_bytes == kernel_cost.attention_bytes > 0


def test_full_kernel_cost_is_quadratic():
    """Per blocks.md: logits and mixing (HW)^2 (dk + dv), Nh (HW)^2 float32 logits."""
    layer = AAConv2d(8, 16, 3, dk=8, dv=4, heads=2, attention="full")
    h, w = 5, 7
    n = h * w
    expected = (9 * 8 * 12 * n + n * 8 * (2 * 8 + 4) + n * 4 * 4 + n * n * (8 + 4))
    assert layer.cost(h, w).macs == expected
    assert layer.cost(h, w).attention_bytes == 2 * n * n * 4


# -- validation -----------------------------------------------------------------------------

def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as err:
        create_block("aa", 16, 32, headz=4)
    assert err.value.field == "headz"
    for key in ("heads", "kappa", "upsilon", "attention", "position", "residual", "window"):
        assert key in err.value.message


def test_bad_heads_names_heads():
    with pytest.raises(ConfigError) as err:
        create_block("aa", 16, 64, heads=6, dk=12, dv=64, attention="full")
    assert err.value.field == "heads"
    assert str(err.value) == "heads: 6 does not divide dv=64"
    with pytest.raises(ConfigError) as err:   # explicit dk is taken as given
        create_block("aa", 16, 64, heads=8, dk=13, dv=16, attention="full")
    assert err.value.field == "heads" and "dk=13" in err.value.message


def test_ratios_round_to_a_multiple_of_heads():
    # 0.2 * 64 = 12.8 -> 16 with 8 heads (nearest multiple); upsilon=1 keeps dv = Fout
    block = create_block("aa", 16, 64, heads=8, attention="full")
    assert (block.augmented.dk, block.augmented.dv) == (16, 16)
    full = create_block("aa", 16, 60, heads=8, upsilon=1.0, kappa=0.1, attention="full")
    assert full.augmented.dv == 56 and full.augmented.dk == 8   # dv <= Fout=60, 8 | dv


@pytest.mark.parametrize("cfg,field", [
    ({"dv": 80}, "dv"),
    ({"upsilon": 1.5, "dv": None}, "upsilon"),
    ({"kappa": 0, "dk": None}, "kappa"),
    ({"attention": "nope"}, "attention"),
    ({"position": "nope"}, "position"),
    ({"position": "relative", "attention": "full"}, "position"),
    ({"position": "sine", "attention": "full"}, "position"),     # 6 input channels, % 4 != 0
    ({"window": 3, "attention": "full"}, "window"),
    ({"window": 0, "attention": "local"}, "window"),
    ({"proj_dim": -1, "attention": "linformer", "input_size": (4, 4)}, "proj_dim"),
    ({"residual": "dense"}, "residual"),
    ({"pool": "yes", "attention": "full"}, "pool"),
    ({"residual": "wide", "dropout": 2.0, "attention": "full"}, "dropout"),
])
def test_bad_values_name_their_key(cfg, field):
    base = {"dk": 8, "dv": 8, "heads": 2, "input_size": (4, 4)}
    with pytest.raises(ConfigError) as err:
        create_block("aa", 6, 64, **{**base, **cfg})
    assert err.value.field == field, err.value


@pytest.mark.parametrize("kernel", ["relative", "linformer"])
def test_size_bound_kernels_need_and_keep_input_size(kernel):
    with pytest.raises(MapSizeError):
        create_block("aa", 8, 16, attention=kernel, dk=8, dv=8, heads=2)
    block = create_block("aa", 8, 16, attention=kernel, dk=8, dv=8, heads=2, input_size=(6, 6))
    cls = block_class("aa")
    with pytest.raises(MapSizeError):
        cls.check_size(8, 16, 1, block.cfg | {"input_size": (6, 6)}, (4, 4))
    with pytest.raises(MapSizeError):
        block(torch.randn(2, 8, 4, 4))


def test_learned_position_needs_input_size():
    with pytest.raises(MapSizeError):
        create_block("aa", 8, 16, attention="full", position="learned", dk=8, dv=8, heads=2)
