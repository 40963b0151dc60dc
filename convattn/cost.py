"""Analytic cost of a block or kernel for one image.

Generic FLOP counters miss attention (fused SDPA reports 0 on CPU, matmul
attention is skipped by thop), so every block and kernel owns its formulas.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Cost of one forward pass for ONE image (batch 1).

    macs: multiply-accumulates, attention logits and mixing included.
    attention_bytes: bytes of the attention tensors materialised at once (logits /
        weights, float32), the term that makes full attention quadratic in memory.
    """

    macs: int = 0
    attention_bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.attention_bytes + other.attention_bytes)


def conv_macs(in_ch: int, out_ch: int, kernel: int | tuple[int, int], out_hw: tuple[int, int],
              groups: int = 1) -> int:
    """Multiply-accumulates of a 2D convolution producing an ``out_hw`` map."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return (in_ch // groups) * out_ch * kh * kw * out_hw[0] * out_hw[1]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution / pooling along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
