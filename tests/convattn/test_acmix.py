"""ACmix: parameter formula, shift init that survives a model-wide init, the local
attention against a brute-force loop, tiny/odd maps, config errors and cost."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convattn import ConfigError, create_block
from convattn.blocks.acmix import ACmix, ShiftConv

SIZES = [(1, 1), (2, 2), (3, 3), (5, 7), (7, 4)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("c", "heads", "k"), [(16, 4, 3), (24, 2, 5), (12, 3, 1), (8, 8, 3)])
def test_parameter_count_is_the_closed_form(c, heads, k):
    m = ACmix(c, c, kernel_att=7, heads=heads, kernel_conv=k)
    assert n_params(m) == 3 * c * c + 3 * c + 3 * c // heads + 3 * heads * k * k + c * k ** 4 + 2
    # term by term: which layer each term of the formula is
    assert sum(n_params(getattr(m, f"conv{i}")) for i in (1, 2, 3)) == 3 * c * c + 3 * c
    assert n_params(m.conv_p) == 3 * (c // heads)            # 2 -> head_dim, with bias
    assert n_params(m.fc) == 3 * heads * k * k and m.fc.bias is None
    assert n_params(m.dep_conv) == c * k ** 4                # no bias (reference sets None)
    assert m.rate1.numel() + m.rate2.numel() == 2


def test_parameter_count_with_different_in_and_out():
    fin, fout, heads, k = 8, 12, 3, 3
    m = ACmix(fin, fout, heads=heads, kernel_conv=k)
    assert n_params(m) == (3 * fin * fout + 3 * fout + 3 * fout // heads + 3 * heads * k * k
                           + fout * k ** 4 + 2)


def assert_shift_kernels(conv: ShiftConv) -> None:
    k = conv.kernel_size
    w = conv.weight.detach()
    assert w.shape == (conv.out_channels, k * k, k, k)
    for i in range(k * k):
        expected = torch.zeros(k, k)
        expected[i // k, i % k] = 1.0
        assert torch.equal(w[:, i], expected.expand_as(w[:, i])), f"offset {i} is not a shift"


def small_acmix_resnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        create_block("acmix", 16, 32, 1, heads=4, expansion=2),
        create_block("acmix", 32, 32, 2, heads=2, residual="basic"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def torchvision_init(model: nn.Module) -> None:
    """What torchvision's ResNet (and ResNet-ACmix) does after building."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def acmix_layers(model: nn.Module) -> list[ACmix]:
    return [m for m in model.modules() if isinstance(m, ACmix)]


def test_shift_init_and_rates_survive_a_torchvision_style_init():
    torch.manual_seed(0)
    model = small_acmix_resnet()
    torchvision_init(model)
    layers = acmix_layers(model)
    assert len(layers) == 2
    for m in layers:
        assert_shift_kernels(m.dep_conv)
        assert m.rate1.item() == 0.5 and m.rate2.item() == 0.5
        assert m.dep_conv.weight.requires_grad           # learnable, only initialised as shifts


def test_reset_parameters_restores_shifts_after_an_init_of_every_4d_weight():
    torch.manual_seed(0)
    model = small_acmix_resnet()
    for p in model.parameters():          # a cruder global init that hits the shift conv too
        if p.dim() == 4:
            nn.init.kaiming_normal_(p)
        elif p.dim() == 1 and p.numel() == 1:
            nn.init.constant_(p, 3.0)
    layer = acmix_layers(model)[0]
    q_weight = layer.conv1.weight.detach().clone()
    with pytest.raises(AssertionError):
        assert_shift_kernels(layer.dep_conv)
    for m in acmix_layers(model):
        m.reset_parameters()
        assert_shift_kernels(m.dep_conv)
        assert m.rate1.item() == 0.5 and m.rate2.item() == 0.5
    assert torch.equal(layer.conv1.weight, q_weight)   # the block's reset owns only its own init


def test_shift_conv_at_init_sums_shifted_maps():
    torch.manual_seed(0)
    k, groups, out_ch = 3, 2, 4
    conv = ShiftConv(k * k * groups, out_ch, k, groups=groups)
    x = torch.randn(1, k * k * groups, 4, 5)
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    y = conv(x)
    for o in range(out_ch):
        g = o // (out_ch // groups)
        expected = sum(padded[0, g * k * k + i, i // k:i // k + 4, i % k:i % k + 5]
                       for i in range(k * k))
        torch.testing.assert_close(y[0, o], expected)


def brute_force_attention(m: ACmix, q, k, v, mode: str) -> torch.Tensor:
    """Loop over queries and window offsets; ``mode`` is how out-of-map keys are mapped."""
    b, c, h, w = q.shape
    s, r, d = m.stride, m.kernel_att // 2, m.head_dim
    xs, ys = torch.linspace(-1, 1, w), torch.linspace(-1, 1, h)
    grid = torch.stack([xs.expand(h, w), ys.unsqueeze(1).expand(h, w)]).unsqueeze(0)
    pe = m.conv_p(grid)[0]                                           # (d, h, w)

    def index(i: int, n: int) -> int:
        if 0 <= i < n:
            return i
        if mode == "reflect":
            return -i if i < 0 else 2 * (n - 1) - i
        return min(max(i, 0), n - 1)                                   # replicate

    ho, wo = math.ceil(h / s), math.ceil(w / s)
    out = torch.zeros(b, c, ho, wo)
    for bi in range(b):
        for head in range(m.heads):
            ch = slice(head * d, (head + 1) * d)
            for oy in range(ho):
                for ox in range(wo):
                    y0, x0 = oy * s, ox * s
                    qi = q[bi, ch, y0, x0] * d ** -0.5
                    logits, values = [], []
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            yj, xj = index(y0 + dy, h), index(x0 + dx, w)
                            kj = k[bi, ch, yj, xj] + pe[:, y0, x0] - pe[:, yj, xj]
                            logits.append(qi @ kj)
                            values.append(v[bi, ch, yj, xj])
                    weights = torch.stack(logits).softmax(0)
                    out[bi, ch, oy, ox] = (weights[:, None] * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize(("size", "kernel_att", "stride", "mode"), [
    ((5, 6), 5, 1, "reflect"), ((5, 7), 5, 2, "reflect"),  # sides > padding: reference's pad
    ((3, 5), 5, 1, "reflect"),
    ((3, 5), 7, 1, "replicate"), ((2, 3), 5, 2, "replicate"),  # a side <= padding
])
def test_local_attention_equals_brute_force(size, kernel_att, stride, mode):
    torch.manual_seed(0)
    m = ACmix(4, 4, kernel_att=kernel_att, heads=2, stride=stride)
    q, k, v = (torch.randn(1, 4, *size) for _ in range(3))
    with torch.no_grad():
        torch.testing.assert_close(m._attention(q, k, v), brute_force_attention(m, q, k, v, mode))


def test_output_mixes_the_two_paths_with_the_rates():
    torch.manual_seed(0)
    m = ACmix(4, 8, heads=2)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        both = m(x)
        m.rate2.fill_(0.0)
        att = m(x)
        m.rate1.fill_(0.0)
        m.rate2.fill_(1.0)
        conv = m(x)
    torch.testing.assert_close(both, att + 0.5 * conv)


@pytest.mark.parametrize("residual", ["bottleneck", "basic"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", SIZES)
def test_block_runs_on_tiny_odd_and_non_square_maps(residual, stride, size):
    torch.manual_seed(0)
    block = create_block("acmix", 8, 16, stride, residual=residual, heads=2, expansion=2,
                         input_size=size)
    y = block(torch.randn(2, 8, *size))
    assert y.shape == (2, 16, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    y.square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("residual", ["bottleneck", "basic"])
def test_gradients_reach_every_parameter(residual):
    torch.manual_seed(0)
    block = create_block("acmix", 8, 16, 2, residual=residual, heads=2, expansion=2)
    (block(torch.randn(2, 8, 5, 7)) * torch.randn(2, 16, 3, 4)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        if name.endswith("conv_p.bias"):
            continue    # q.pe_i - q.pe_j cancels the bias exactly (module docstring)
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_residual_placement_and_parameter_count():
    heads, k, fin, fout = 4, 3, 16, 32
    bottleneck = create_block("acmix", fin, fout, 2, heads=heads, expansion=4)
    width = fout // 4
    assert isinstance(bottleneck.body.conv2, ACmix) and bottleneck.acmix.stride == 2
    acmix = 3 * width ** 2 + 3 * width + 3 * width // heads + 3 * heads * k * k + width * k ** 4 + 2
    expected = (fin * width + 2 * width + acmix + 2 * width + width * fout + 2 * fout
                + fin * fout + 2 * fout)                      # 1x1 + BN shortcut
    assert n_params(bottleneck) == expected
    basic = create_block("acmix", fout, fout, 1, heads=heads, residual="basic")
    assert isinstance(basic.body.conv1, ACmix) and basic.acmix.in_ch == fout
    acmix = (3 * fout ** 2 + 3 * fout + 3 * fout // heads + 3 * heads * k * k + fout * k ** 4 + 2)
    assert n_params(basic) == acmix + 2 * fout + 9 * fout ** 2 + 2 * fout


@pytest.mark.parametrize(("cfg", "field"), [
    ({"heads": 3}, "heads"),                                  # width 16 // 4 = 4
    ({"heads": 3, "residual": "basic"}, "heads"),
    ({"heads": 0}, "heads"),
    ({"kernel_att": 4}, "kernel_att"),
    ({"kernel_conv": 2}, "kernel_conv"),
    ({"residual": "wide"}, "residual"),
    ({"expansion": 32}, "expansion"),
])
def test_bad_config_names_the_key(cfg, field):
    with pytest.raises(ConfigError) as info:
        create_block("acmix", 16, 16, **cfg)
    assert info.value.field == field
    assert field in str(info.value)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as info:
        create_block("acmix", 16, 16, window=3)
    for key in ("residual", "heads", "kernel_att", "kernel_conv", "expansion", "input_size"):
        assert key in info.value.message


def conv_linear_macs(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(5, 7), (8, 8)])
def test_cost_matches_flop_counter_plus_attention(stride, size):
    torch.manual_seed(0)
    heads, k_att, c = 2, 7, 8
    m = ACmix(4, c, kernel_att=k_att, heads=heads, stride=stride)
    ho, wo = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    attention = 2 * c * k_att ** 2 * ho * wo       # logits + mixing (elementwise: not counted)
    cost = m.cost(*size)
    assert cost.macs - attention == conv_linear_macs(m, torch.randn(1, 4, *size))
    assert cost.attention_bytes == heads * k_att ** 2 * ho * wo * 4
    block = create_block("acmix", 4, 16, stride, heads=heads, expansion=2)
    assert (block.cost(*size).macs - attention
            == conv_linear_macs(block, torch.randn(1, 4, *size)))
