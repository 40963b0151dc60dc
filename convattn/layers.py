"""Small conv-BN-activation helpers shared by the block families.

Every convolution here is bias-free because a batch norm follows it (the BN
shift makes a conv bias redundant), as in torchvision's ResNets and the
official Wide-ResNet code. ``conv_cost`` reads a built ``nn.Conv2d`` so that a
block's analytic cost follows its real layers instead of a hand-copied formula.
"""

from __future__ import annotations

from torch import nn

from .cost import Cost, conv_macs, out_size


def conv(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
         groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """kxk conv (bias-free unless asked), 'same' padding: output ceil(H/stride) x
    ceil(W/stride) for odd k."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                     groups=groups, bias=bias)


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """conv -> BN (-> ReLU when ``act``)."""
    layers: list[nn.Module] = [conv(in_ch, out_ch, kernel_size, stride, groups),
                               nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def projection_shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """ResNet shortcut: identity when the shape is kept, else 1x1 conv (stride) + BN.

    A 1x1 stride-s conv with no padding gives (H - 1) // s + 1 = ceil(H/s), the same
    size as the residual branch's padded 3x3 stride-s conv, also on odd maps.
    """
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_bn(in_ch, out_ch, kernel_size=1, stride=stride, act=False)


def conv_cost(layer: nn.Conv2d, hw: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(multiply-adds, output (H, W)) of a built conv applied to an ``hw`` map."""
    out_hw = tuple(out_size(n, k, s, p, d) for n, k, s, p, d in zip(
        hw, layer.kernel_size, layer.stride, layer.padding, layer.dilation, strict=True))
    return conv_macs(layer.in_channels, layer.out_channels, layer.kernel_size, out_hw,
                     layer.groups), out_hw


def convs_macs(module: nn.Module, hw: tuple[int, int]) -> int:
    """Multiply-adds of a chain of convs inside ``module`` run in registration order.

    Only for straight chains (each conv consumes the previous conv's output map);
    blocks with branches add their branches separately.
    """
    macs = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            m, hw = conv_cost(layer, hw)
            macs += m
    return macs


def layer_cost(layer: nn.Module, hw: tuple[int, int]) -> Cost:
    """Cost of a conv-like layer: a plain ``nn.Conv2d`` or a layer with ``cost(h, w)``
    (an augmented conv that replaces one of a residual block's convs)."""
    if isinstance(layer, nn.Conv2d):
        return Cost(conv_cost(layer, hw)[0])
    return layer.cost(*hw)
