"""benchmarks/_memory.py measures what a step really holds, and turns failures into data.

Each case is a real subprocess with a real torch step; the builders live in this file
(the helper imports the script it is given by path).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
from _memory import Case, measure_case  # noqa: E402

MIB = 1 << 20
N = 8 * MIB // 4           # 8 MiB of float32


class Repeat(nn.Module):
    """y = x repeated ``times``: no tensor is saved for backward, grad_x is one x."""

    def __init__(self, times: int):
        super().__init__()
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(self.times)


def build_repeat(cfg: dict, device: torch.device) -> Case:
    x = torch.randn(N, device=device, requires_grad=True)
    return Case(Repeat(cfg["times"]), (x,), {"attention_bytes": 0})


def build_broken(cfg: dict, device: torch.device) -> Case:
    raise ValueError("no such case")


def test_peak_is_the_steps_live_tensors():
    # During the step: y (times x 8 MiB) is alive while backward makes grad_x (8 MiB);
    # x and the fixed output gradient are in the baseline.
    small = measure_case(Path(__file__), "build_repeat", {"times": 4}, threads=1,
                         mem_cap=2 << 30, repeats=2, min_repeats=1)
    big = measure_case(Path(__file__), "build_repeat", {"times": 16}, threads=1,
                       mem_cap=2 << 30, repeats=2, min_repeats=1)
    assert small["status"] == big["status"] == "ok"
    assert small["peak_bytes"] == pytest.approx(40 * MIB, rel=0.15)
    # The difference cancels any fixed overhead of a step: exactly 12 x 8 MiB more.
    assert big["peak_bytes"] - small["peak_bytes"] == pytest.approx(96 * MIB, rel=0.05)
    assert small["time_s"]["n"] == 2 and small["cpu_time_s"]["median"] > 0


def test_case_over_the_cap_is_oom_not_a_crash():
    result = measure_case(Path(__file__), "build_repeat", {"times": 64}, threads=1,
                          mem_cap=256 * MIB)   # 64 x 8 MiB = 512 MiB > cap
    assert result["status"] == "oom"
    assert "peak_bytes" not in result and result["info"] == {"attention_bytes": 0}


def test_builder_error_is_reported_in_one_line():
    result = measure_case(Path(__file__), "build_broken", {}, threads=1)
    assert result["status"] == "error"
    assert result["error"] == "build: ValueError: no such case"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_cases_run_in_this_process_with_the_same_peak():
    # on CUDA the allocator's counters measure a case in this process (no ~12 s start)
    small = measure_case(Path(__file__), "build_repeat", {"times": 4}, device="cuda",
                         repeats=2, min_repeats=1)
    big = measure_case(Path(__file__), "build_repeat", {"times": 16}, device="cuda",
                       repeats=2, min_repeats=1)
    assert small["status"] == big["status"] == "ok"
    assert big["peak_bytes"] - small["peak_bytes"] == pytest.approx(96 * MIB, rel=0.05)
    assert torch.cuda.memory_allocated() < 8 * MIB  # nothing of the cases left behind
    assert "_bench_script" in sys.modules  # the builder's script was loaded here
