"""CvT and ATC blocks: parameter closed forms, CvT-13 and the ATC paper counts, the
token embedding geometry, attention against a naive computation, tiny maps,
config errors and cost."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convattn import ConfigError, create_block
from convattn.blocks.cvt import ConvEmbed

SIZES = [(1, 1), (2, 2), (3, 3), (5, 7), (7, 4)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("c", "heads"), [(32, 4), (48, 3), (16, 1)])
def test_cvt_block_parameter_count(c, heads):
    block = create_block("cvt", c, c, 1, heads=heads)
    assert block.embed is None                        # in == out, stride 1: no embedding
    assert n_params(block) == 12 * c * c + 46 * c
    # which parts the closed form covers
    projection = 9 * c + 2 * c + c * c + c            # dw 3x3 (no bias), BN, Linear + bias
    for name in ("q_proj", "k_proj", "v_proj"):
        assert n_params(getattr(block.attn, name)) == projection
    assert n_params(block.attn.out_proj) == c * c + c
    assert n_params(block.norm1) + n_params(block.norm2) == 4 * c
    assert n_params(block.ffn) == 8 * c * c + 5 * c
    assert n_params(block.attn.kernel) == 0


def test_cvt_embedding_adds_conv_and_layer_norm():
    block = create_block("cvt", 16, 32, 2, heads=2)
    assert n_params(block) == (12 * 32 * 32 + 46 * 32) + (9 * 16 * 32 + 32) + 2 * 32
    no_bias = create_block("cvt", 32, 32, 1, heads=2, qkv_bias=False)
    assert n_params(no_bias) == 12 * 32 * 32 + 46 * 32 - 3 * 32


@pytest.mark.parametrize(("c", "heads"), [(32, 4), (24, 3)])
def test_atc_block_parameter_count(c, heads):
    block = create_block("atc", c, c, 1, heads=heads)
    unit = 9 * c + 2 * c + c * c + 2 * c              # dw 3x3, BN, pointwise, BN
    for name in ("q_proj", "k_proj", "v_proj"):
        assert n_params(getattr(block.attn, name)) == unit
    assert block.attn.out_proj is None
    h = 4 * c                                         # pw, BN, dw 3x3, BN, pw, BN
    assert n_params(block.ffn) == c * h + 2 * h + 9 * h + 2 * h + h * c + 2 * c
    assert n_params(block) == 11 * c * c + 97 * c


def stack(name: str, widths, heads, depths, classes: int, **cfg) -> nn.Sequential:
    """A CvT/ATC-style model: stages of blocks (strides 4, 2, 2), LN + avg pool + Linear."""
    layers: list[nn.Module] = []
    cin = 3
    for c, h, d, s in zip(widths, heads, depths, (4, 2, 2), strict=True):
        for i in range(d):
            layers.append(create_block(name, cin if i == 0 else c, c, s if i == 0 else 1,
                                       heads=h, **cfg))
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(cin), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def test_cvt13_parameter_count_is_the_reference_minus_the_cls_token():
    with torch.device("meta"):
        model = stack("cvt", (64, 192, 384), (1, 3, 6), (1, 2, 10), 1000)
    assert n_params(model) == 19_997_480 - 384        # microsoft/CvT CvT-13, no cls token


# Paper counts (ATC, Tables 3-4, CIFAR-100 32x32) and the configs that reproduce them.
ATC_PAPER = {  # name: (blocks per stage, paper params)
    "atc-3": ((1, 1, 1), 2.9e6), "atc-5 (1/1/3)": ((1, 1, 3), 6.4e6),
    "atc-5 (1/3/1)": ((1, 3, 1), 3.3e6), "atc-5 (3/1/1)": ((3, 1, 1), 2.9e6),
    "atc-9": ((1, 2, 6), 12.0e6), "atc-13": ((1, 2, 10), 19.2e6), "atc-15": ((1, 4, 10), 19.7e6),
}


@pytest.mark.parametrize("name", list(ATC_PAPER))
def test_atc_models_land_within_5_percent_of_the_paper(name):
    depths, paper = ATC_PAPER[name]
    with torch.device("meta"):
        model = stack("atc", (80, 144, 400), (1, 3, 5), depths, 100)
    assert abs(n_params(model) / paper - 1) < 0.05


@pytest.mark.parametrize("name", ["atc-3", "atc-9", "atc-13", "atc-15"])
def test_atc_at_cvt13_widths_also_lands_within_5_percent(name):
    depths, paper = ATC_PAPER[name]
    with torch.device("meta"):
        model = stack("atc", (64, 192, 384), (1, 3, 6), depths, 100)
    assert abs(n_params(model) / paper - 1) < 0.05


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(7, 4, 2), (3, 2, 1)])
def test_embedding_matches_cvt_geometry_where_cvt_has_ceil_output(kernel, stride, padding):
    torch.manual_seed(0)
    embed = ConvEmbed(3, 8, kernel, stride)
    assert embed.padding == padding
    ref = nn.Conv2d(3, 8, kernel, stride, padding)
    ref.load_state_dict(embed.proj.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(embed.proj(x), ref(x))
    torch.testing.assert_close(embed(x), embed.norm(ref(x)))
    # where CvT's padding gives fewer rows than ceil(H/s), zeros are added at the end
    x = torch.randn(1, 3, 5, 9)
    expected = embed.norm(ref(nn.functional.pad(x, (0, embed.extra_padding(9),
                                                    0, embed.extra_padding(5)))))
    y = embed(x)
    assert y.shape[-2:] == (math.ceil(5 / stride), math.ceil(9 / stride))
    torch.testing.assert_close(y, expected)


def test_cifar_sized_stages_reach_one_by_one_keys():
    """At 32x32 the grids are 8, 4, 2 and the last stage's stride-2 keys are 1x1."""
    torch.manual_seed(0)
    model = stack("cvt", (8, 16, 24), (1, 2, 3), (1, 1, 2), 10)
    key_grids = []
    for block in model[:4]:
        block.attn.k_proj.register_forward_hook(
            lambda _m, _i, out: key_grids.append(tuple(out.shape[-2:])))
    x = torch.randn(2, 3, 32, 32)
    grids = []
    for layer in model[:4]:
        x = layer(x)
        grids.append(tuple(x.shape[-2:]))
    assert grids == [(8, 8), (4, 4), (2, 2), (2, 2)]
    assert key_grids == [(4, 4), (2, 2), (1, 1), (1, 1)]
    assert model[4:](x).shape == (2, 10)


def test_cvt_attention_equals_naive_multi_head_attention():
    torch.manual_seed(0)
    c, heads = 12, 3
    block = create_block("cvt", c, c, 1, heads=heads).eval()
    x = torch.randn(2, c, 5, 6)
    attn = block.attn
    with torch.no_grad():
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)   # k, v on a 3x3 grid
        assert k.shape[-2:] == (3, 3)
        d = c // heads
        outs = []
        for h in range(heads):
            qh = q[:, h * d:(h + 1) * d].flatten(2).transpose(1, 2)      # (B, 30, d)
            kh = k[:, h * d:(h + 1) * d].flatten(2).transpose(1, 2)      # (B, 9, d)
            vh = v[:, h * d:(h + 1) * d].flatten(2).transpose(1, 2)
            weights = (qh @ kh.transpose(1, 2) * d ** -0.5).softmax(-1)  # head width scale
            outs.append((weights @ vh).transpose(1, 2).reshape(2, d, 5, 6))
        expected = attn.out_proj(torch.cat(outs, 1))
        torch.testing.assert_close(attn(x), expected)
        # pre-norm residual layout: x + Attn(LN(x)), then + MLP(LN(.))
        y = x + attn(block.norm1(x))
        torch.testing.assert_close(block(x), y + block.ffn(block.norm2(y)))


CASES = [("cvt", {"attention": "full"}), ("cvt", {"attention": "linear"}),
         ("atc", {}), ("atc", {"conv": "residual", "embed": "residual", "mlp_ratio": 1}),
         ("atc", {"embed": "residual", "attention": "linear"})]


@pytest.mark.parametrize(("name", "cfg"), CASES)
@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("size", SIZES)
def test_blocks_run_on_tiny_odd_and_non_square_maps(name, cfg, stride, size):
    torch.manual_seed(0)
    block = create_block(name, 8, 16, stride, heads=2, input_size=size, **cfg)
    y = block(torch.randn(2, 8, *size))
    assert y.shape == (2, 16, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "cfg"), CASES)
@pytest.mark.parametrize(("in_ch", "stride"), [(8, 2), (16, 1)])
def test_gradients_reach_every_parameter(name, cfg, in_ch, stride):
    torch.manual_seed(0)
    block = create_block(name, in_ch, 16, stride, heads=2, **cfg)
    y = block(torch.randn(2, in_ch, 10, 14))
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"zero gradient for {pname}"


@pytest.mark.parametrize(("name", "cfg", "field"), [
    ("cvt", {"heads": 3}, "heads"), ("atc", {"heads": 5}, "heads"),
    ("cvt", {"attention": "relative"}, "attention"), ("atc", {"attention": "local"}, "attention"),
    ("cvt", {"embed_kernel": 4}, "embed_kernel"), ("cvt", {"kv_stride": 0}, "kv_stride"),
    ("cvt", {"mlp_ratio": 0}, "mlp_ratio"), ("cvt", {"qkv_bias": "yes"}, "qkv_bias"),
    ("atc", {"conv": "mbconv"}, "conv"), ("atc", {"embed": "patch"}, "embed"),
])
def test_bad_config_names_the_key(name, cfg, field):
    with pytest.raises(ConfigError) as info:
        create_block(name, 16, 32, 2, **cfg)
    assert info.value.field == field


@pytest.mark.parametrize("name", ["cvt", "atc"])
def test_unknown_key_and_stride(name):
    with pytest.raises(ConfigError) as info:
        create_block(name, 16, 16, window=3)
    for key in ("heads", "mlp_ratio", "kv_stride", "attention", "embed_kernel", "input_size"):
        assert key in info.value.message
    with pytest.raises(ConfigError) as info:
        create_block(name, 16, 16, 3)
    assert info.value.field == "stride"


def conv_linear_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Convolution and matmul MACs as counted by torch (SDPA on CPU is not counted)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    counts = counter.get_flop_counts()["Global"]
    counted = {"convolution", "addmm", "mm"}
    return sum(v for op, v in counts.items() if op.__name__ in counted) // 2


@pytest.mark.parametrize(("name", "cfg"), [("cvt", {}), ("atc", {}),
                                           ("atc", {"conv": "residual", "embed": "residual"})])
@pytest.mark.parametrize(("in_ch", "stride", "size"), [(8, 4, (13, 9)), (8, 2, (5, 7)),
                                                       (16, 1, (6, 6))])
def test_cost_matches_flop_counter_plus_attention(name, cfg, in_ch, stride, size):
    c = 16
    block = create_block(name, in_ch, c, stride, heads=2, **cfg)
    q_hw = (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    kv_hw = (math.ceil(q_hw[0] / 2), math.ceil(q_hw[1] / 2))
    nq, nk = q_hw[0] * q_hw[1], kv_hw[0] * kv_hw[1]
    attention = nq * nk * 2 * c                      # logits (dk = C) + mixing (dv = C)
    cost = block.cost(*size)
    assert cost.macs - attention == conv_linear_macs(block, torch.randn(1, in_ch, *size))
    assert cost.attention_bytes == 2 * nq * nk * 4
