"""Position encodings: values against their formulas, channel counts, interpolation, rules."""

from __future__ import annotations

import math

import pytest
import torch

from convattn import ConfigError, MapSizeError
from convattn.position import check_position, create_position, list_positions


def test_registry_lists_all_and_rejects_unknown():
    assert list_positions() == ["coord", "learned", "none", "relative", "sine"]
    with pytest.raises(ConfigError, match="known: coord, learned, none, relative, sine") as err:
        create_position("rope", 8)
    assert err.value.field == "position"
    with pytest.raises(ConfigError) as err:
        create_position("none", 0)
    assert err.value.field == "channels"


@pytest.mark.parametrize("name", ["none", "relative"])
def test_identity_encodings(name):
    pos = create_position(name, 6)
    x = torch.randn(2, 6, 3, 4)
    assert pos.out_channels == 6 and torch.equal(pos(x), x)
    assert list(pos.parameters()) == []


def test_sine_values_equal_formula_at_a_few_positions():
    d, h, w = 16, 5, 7
    pos = create_position("sine", d, input_size=(h, w))
    x = torch.zeros(1, d, h, w)
    out = pos(x)
    assert pos.out_channels == d and out.shape == (1, d, h, w)
    for y, xx in ((0, 0), (2, 5), (4, 6), (3, 1)):
        for k in range(d // 4):
            denom = 10000 ** (4 * k / d)
            assert out[0, 2 * k, y, xx].item() == pytest.approx(math.sin(y / denom), abs=1e-6)
            assert out[0, 2 * k + 1, y, xx].item() == pytest.approx(math.cos(y / denom), abs=1e-6)
            assert out[0, d // 2 + 2 * k, y, xx].item() == pytest.approx(
                math.sin(xx / denom), abs=1e-6)
            assert out[0, d // 2 + 2 * k + 1, y, xx].item() == pytest.approx(
                math.cos(xx / denom), abs=1e-6)
    # Added, not replacing; rebuilt for another map size; not in the state dict.
    x2 = torch.randn(2, d, 3, 2)
    out2 = pos(x2)
    assert out2[1, 1, 2, 1].item() == pytest.approx(x2[1, 1, 2, 1].item() + math.cos(2.0),
                                                    abs=1e-6)
    assert "table" not in pos.state_dict()


def test_sine_needs_channels_divisible_by_4():
    with pytest.raises(ConfigError, match="divisible by 4") as err:
        create_position("sine", 6, input_size=(4, 4))
    assert err.value.field == "channels"


def test_coord_adds_two_normalised_channels():
    pos = create_position("coord", 3)
    assert pos.out_channels == 5
    x = torch.randn(2, 3, 3, 5)
    out = pos(x)
    assert out.shape == (2, 5, 3, 5)
    assert torch.equal(out[:, :3], x)
    assert out[0, 3, :, 0].tolist() == [-1.0, 0.0, 1.0]               # rows
    assert out[1, 4, 0, :].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]    # columns
    assert create_position("coord", 1)(torch.zeros(1, 1, 1, 1))[0, 1:].abs().sum() == 0


def test_learned_adds_its_table_and_interpolates_bilinearly():
    pos = create_position("learned", 1, input_size=(1, 2))
    with torch.no_grad():
        pos.table.copy_(torch.tensor([[[[1.0, 5.0]]]]))
    x = torch.zeros(1, 1, 1, 2)
    assert pos(x)[0, 0, 0].tolist() == [1.0, 5.0]
    # 1x2 -> 1x4 with half-pixel centres: [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
    up = pos(torch.zeros(1, 1, 1, 4))[0, 0, 0].tolist()
    assert up == pytest.approx([1.0, 2.0, 4.0, 5.0])
    pos(torch.ones(1, 1, 2, 4)).sum().backward()
    assert pos.table.grad is not None and pos.table.grad.abs().sum() > 0


def test_learned_needs_input_size_and_checks_channels():
    with pytest.raises(MapSizeError, match="needs input_size"):
        create_position("learned", 4)
    pos = create_position("learned", 4, input_size=8)
    assert pos.table.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"expects \(B, 4, H, W\)"):
        pos(torch.zeros(1, 3, 8, 8))


def test_check_position_pairs_relative_with_relative_kernel():
    check_position("relative", "relative")
    check_position("sine", "full")
    check_position("none", "relative")
    with pytest.raises(ConfigError, match="needs attention='relative'") as err:
        check_position("relative", "full")
    assert err.value.field == "position"
    with pytest.raises(ConfigError, match="unknown position encoding"):
        check_position("absolute", "full")
