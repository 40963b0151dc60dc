"""ACmix (Pan et al., CVPR 2022): one set of 1x1 projections, two aggregations.

``ACmix(in_ch, out_ch, kernel_att=7, heads=4, kernel_conv=3, stride=1)`` follows the
reference module (LeapLabTHU/ACmix, ResNet version) layer for layer, with the same
attribute names (conv1/2/3, conv_p, fc, dep_conv, rate1/rate2):

- Stage I: three 1x1 convs with bias give q, k, v (B, out_ch, H, W), shared by both
  paths; head_dim = out_ch / heads.
- Attention path: every query attends to the kernel_att x kernel_att window around
  it (keys/values unfolded from a padded map), queries scaled by head_dim^-0.5;
  relative position from a 1x1 conv of a [-1, 1] coordinate grid,
  logit(i, j) = q_i . (k_j + pe_i - pe_j); stride by subsampling the queries (and
  the unfold), so the output is ceil(H/s) x ceil(W/s).
- Convolution path: a bias-free 1x1 "fc" maps the 3*heads q/k/v maps of each head
  channel to kernel_conv^2 maps, then a grouped kxk conv (groups = head_dim, no
  bias) whose weight starts as one-hot shift kernels and is learnable.
- Output = rate1 * attention + rate2 * convolution, both rates learnable, init 0.5.

Parameters (Fin = Fout = C, N heads, k = kernel_conv):
3C^2 + 3C (q/k/v) + 3C/N (conv_p: 2 -> head_dim with bias) + 3N k^2 (fc)
+ C k^4 (shift conv: C outputs x k^2 inputs per group x k x k) + 2 (rates).

The reference's pitfalls and what is done here instead:

- Tiny maps: reflection padding needs every side longer than the padding
  (kernel_att // 2 = 3, so maps <= 3 crash, e.g. CIFAR's 2x2). Maps whose sides
  are all longer than the padding use reflection as the reference does; smaller
  maps use REPLICATE padding (border pixels repeated), the closest mode that
  still offers only real pixels as keys and works down to 1x1. The rule is per
  map, not per side, so one map is padded one way.
- Odd sizes with stride 2: the reference reshapes to H//s x W//s and crashes;
  the padded unfold, the query subsampling and the padded shift conv all give
  ceil(H/s) x ceil(W/s), which is what the views use here.
- Shift init clobbered by a global init: the reference assigns the shift kernels
  in ``reset_parameters`` and the ResNet-ACmix models then run a Kaiming init
  over every ``nn.Conv2d``, which overwrites them. Here ``dep_conv`` is a
  ``ShiftConv``, deliberately NOT an ``nn.Conv2d`` subclass, so inits that
  select layers by type leave it alone; inits that touch every 4-D weight can
  call ``ACmix.reset_parameters()`` afterwards (it resets only the shift kernels
  and the rates, the layers the reference's reset owns).
- The reference's reset assigns ``None`` to the shift conv's bias; here it simply
  has none (the parameter formula above has no such term).

Note: q_i . pe_i is the same for every key of query i, so it cancels in the
softmax; only position differences matter and conv_p's bias gets no gradient.
It is kept because it is the reference's formula (and the parameter count).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Block
from ..cost import Cost, conv_macs
from ..errors import ConfigError
from ..layers import layer_cost
from ..registry import register_block
from .resnet import BasicResidual, BottleneckResidual, bottleneck_width, check_positive_int

RESIDUALS = ("bottleneck", "basic")


def check_odd(field: str, value: Any) -> None:
    """Window and kernel sizes must be odd so the window is centred on its query."""
    check_positive_int(field, value)
    if value % 2 == 0:
        raise ConfigError(field, f"{value} is even; allowed: odd sizes (1, 3, 5, 7, ...)")


def check_heads(heads: Any, width: int, what: str) -> None:
    check_positive_int("heads", heads)
    if width % heads:
        raise ConfigError("heads", f"{heads} does not divide {what}={width}")


def shift_kernels(out_ch: int, kernel: int) -> torch.Tensor:
    """(out_ch, k^2, k, k): input channel i of each group is shifted by offset i.

    Summing the k^2 shifted maps of a group is exactly a kxk convolution whose
    per-offset projections were done beforehand by ``fc`` (paper, Sec. 4.3).
    """
    weight = torch.zeros(kernel * kernel, kernel, kernel)
    for i in range(kernel * kernel):
        weight[i, i // kernel, i % kernel] = 1.0
    return weight.unsqueeze(0).repeat(out_ch, 1, 1, 1)


class ShiftConv(nn.Module):
    """Grouped kxk conv without bias, initialised to one-hot shift kernels.

    Not an ``nn.Conv2d`` on purpose: model-wide inits select convs by type
    (torchvision's ``isinstance(m, nn.Conv2d)`` loop) and must not overwrite the
    shift init. Padding k // 2 gives ceil(H/s) x ceil(W/s) outputs.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, groups: int, stride: int = 1):
        super().__init__()
        if in_ch != groups * kernel_size * kernel_size:
            raise ValueError("ShiftConv needs k^2 input channels per group")
        self.in_channels, self.out_channels = in_ch, out_ch
        self.kernel_size, self.groups, self.stride = kernel_size, groups, stride
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch // groups, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(shift_kernels(self.out_channels, self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding, groups=self.groups)

    def cost(self, h: int, w: int) -> Cost:
        out_hw = (math.ceil(h / self.stride), math.ceil(w / self.stride))
        return Cost(conv_macs(self.in_channels, self.out_channels, self.kernel_size, out_hw,
                              self.groups))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, groups={self.groups}, bias=False")


def coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w): x then y coordinates spaced evenly in [-1, 1] (reference order)."""
    xs = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    return torch.stack([xs.expand(h, w), ys.unsqueeze(1).expand(h, w)]).unsqueeze(0)


def window_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding as the reference; replicate when a side is too short."""
    if pad == 0:
        return x
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


class ACmix(nn.Module):
    """(B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s)); see the module docstring."""

    def __init__(self, in_ch: int, out_ch: int, kernel_att: int = 7, heads: int = 4,
                 kernel_conv: int = 3, stride: int = 1):
        super().__init__()
        check_positive_int("in_ch", in_ch)
        check_heads(heads, out_ch, "out_ch")
        check_odd("kernel_att", kernel_att)
        check_odd("kernel_conv", kernel_conv)
        check_positive_int("stride", stride)
        self.in_ch, self.out_ch, self.heads, self.stride = in_ch, out_ch, heads, stride
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.head_dim = out_ch // heads
        self.pad_att = kernel_att // 2
        # Stage I: q, k, v (1x1, with bias), shared by both paths.
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 1)
        self.conv3 = nn.Conv2d(in_ch, out_ch, 1)
        # Relative position: 1x1 conv of the (x, y) grid, one encoding shared by all heads.
        self.conv_p = nn.Conv2d(2, self.head_dim, 1)
        # Convolution path: 3*heads maps -> k^2 maps per head channel, then shift + sum.
        self.fc = nn.Conv2d(3 * heads, kernel_conv * kernel_conv, 1, bias=False)
        self.dep_conv = ShiftConv(kernel_conv * kernel_conv * self.head_dim, out_ch,
                                  kernel_conv, groups=self.head_dim, stride=stride)
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-apply ACmix's own init (rates 0.5, one-hot shifts), e.g. after a global init."""
        with torch.no_grad():
            self.rate1.fill_(0.5)
            self.rate2.fill_(0.5)
        self.dep_conv.reset_parameters()

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (math.ceil(h / self.stride), math.ceil(w / self.stride))

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        s, n, d, kk = self.stride, self.heads, self.head_dim, self.kernel_att ** 2
        ho, wo = self.output_size(h, w)
        pe = self.conv_p(coordinate_grid(h, w, q))                     # (1, d, H, W)
        q = q.reshape(b * n, d, h, w)[:, :, ::s, ::s] * d ** -0.5         # (bN, d, Ho, Wo)
        q_pe = pe[:, :, ::s, ::s]                                      # (1, d, Ho, Wo)

        def windows(t: torch.Tensor) -> torch.Tensor:
            # (b', d, H, W) -> (b', d, kk, Ho, Wo): the window of every (strided) query.
            # The unfold of the padded map has (H - 1) // s + 1 = Ho rows (2 pad = k - 1).
            cols = F.unfold(window_pad(t, self.pad_att), self.kernel_att, stride=s)
            return cols.reshape(t.shape[0], d, kk, ho, wo)

        k_win = windows(k.reshape(b * n, d, h, w))
        pe_win = windows(pe)                                           # (1, d, kk, Ho, Wo)
        logits = (q.unsqueeze(2) * (k_win + q_pe.unsqueeze(2) - pe_win)).sum(1)
        weights = logits.softmax(dim=1)                                # (bN, kk, Ho, Wo)
        v_win = windows(v.reshape(b * n, d, h, w))
        return (weights.unsqueeze(1) * v_win).sum(2).reshape(b, c, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)          # (B, C, H, W)
        b, c, h, w = q.shape
        out_att = self._attention(q, k, v)
        # fc treats (B, 3N, d, HW) as an image: it mixes the 3N maps of each head channel.
        qkv = torch.cat([t.reshape(b, self.heads, self.head_dim, h * w) for t in (q, k, v)], 1)
        f_all = self.fc(qkv)                                           # (B, k^2, d, HW)
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w)       # (B, d*k^2, H, W)
        out_conv = self.dep_conv(f_conv)                               # (B, C, Ho, Wo)
        return self.rate1 * out_att + self.rate2 * out_conv

    def attention_cost(self, h: int, w: int) -> Cost:
        """Logits q.(k + pe_i - pe_j) and mixing over kernel_att^2 keys per query; the
        logits/weights tensor is heads * kernel_att^2 * Ho * Wo floats. (The unfolded
        k/v windows, 2 * C * kernel_att^2 * Ho * Wo floats, are activations on top.)"""
        ho, wo = self.output_size(h, w)
        kk = self.kernel_att ** 2
        return Cost(macs=2 * self.out_ch * kk * ho * wo,
                    attention_bytes=self.heads * kk * ho * wo * 4)

    def cost(self, h: int, w: int) -> Cost:
        hw = h * w
        projections = 3 * self.in_ch * self.out_ch * hw + 2 * self.head_dim * hw  # + conv_p
        fc = 3 * self.heads * self.kernel_conv ** 2 * self.head_dim * hw
        return (Cost(projections + fc) + self.dep_conv.cost(h, w)
                + self.attention_cost(h, w))

    def extra_repr(self) -> str:
        return (f"{self.in_ch}, {self.out_ch}, kernel_att={self.kernel_att}, heads={self.heads}, "
                f"kernel_conv={self.kernel_conv}, stride={self.stride}")


@register_block("acmix")
class ACmixBlock(Block):
    """ACmix inside a ResNet residual block.

    ``residual=bottleneck`` (default): ResNet-ACmix, ACmix(width, width, stride)
    replaces the bottleneck's 3x3 (width = out_ch // expansion); ``residual=basic``:
    ACmix(in_ch, out_ch, stride) replaces the first 3x3 of a basic block
    (``expansion`` is then unused). ``heads`` must divide the ACmix width.
    """

    defaults: dict[str, Any] = {"residual": "bottleneck", "heads": 4, "kernel_att": 7,
                                "kernel_conv": 3, "expansion": 4}
    strides = (1, 2)

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        """``expansion`` only matters for the bottleneck residual."""
        out = dict(cfg)
        if cfg["residual"] != "bottleneck":
            del out["expansion"]
        return out

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        if cfg["residual"] not in RESIDUALS:
            raise ConfigError("residual", f"{cfg['residual']!r}; allowed: {', '.join(RESIDUALS)}")
        check_odd("kernel_att", cfg["kernel_att"])
        check_odd("kernel_conv", cfg["kernel_conv"])
        if cfg["residual"] == "bottleneck":
            width = bottleneck_width(out_ch, cfg)
            check_heads(cfg["heads"], width, "the ACmix width out_ch // expansion")
        else:
            check_positive_int("expansion", cfg["expansion"])
            check_heads(cfg["heads"], out_ch, "out_ch")

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c = self.cfg
        if c["residual"] == "bottleneck":
            width = out_ch // c["expansion"]
            mixer = ACmix(width, width, c["kernel_att"], c["heads"], c["kernel_conv"], stride)
            self.body = BottleneckResidual(in_ch, out_ch, stride, width=width, conv2=mixer)
        else:
            mixer = ACmix(in_ch, out_ch, c["kernel_att"], c["heads"], c["kernel_conv"], stride)
            self.body = BasicResidual(in_ch, out_ch, stride, conv1=mixer)

    @property
    def acmix(self) -> ACmix:
        """The ACmix layer inside the residual body (registered there only once)."""
        return self.body.conv2 if self.cfg["residual"] == "bottleneck" else self.body.conv1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def cost(self, h: int, w: int) -> Cost:
        return layer_cost(self.body, (h, w))
