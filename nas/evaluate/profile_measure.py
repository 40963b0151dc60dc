"""Measure a device profile (:mod:`nas.evaluate.device_profile`) on the machine this runs on.

Every point is one real training step (forward, loss, backward, SGD-momentum step) of ONE
block built alone at a (map size, channels) of the grid, timed with
:func:`search_space.measure.measure` (CUDA events on a GPU, ``perf_counter`` on a CPU;
median of the repeats), at the precision and memory format a study's ``auto`` gives on
that device. The fixed per-step overhead is the step of a trivial model (1x1 conv +
pool + linear); it is subtracted from every block point. The memory rule compares the
measured peak training memory of a few zoo models with the cost model's estimate
(``max_memory_reserved`` on CUDA, what decides an out-of-memory error).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .device_profile import MIN_POINT_S, PROFILE_VERSION

#: (map side, channels) points: along the usual pyramids (large maps, few channels)
#: plus a neighbour each, so a curve spans a decade or more of work; the small ones
#: (8x8 maps of 16-32 channels, 4x4 and 2x2 maps) are the launch-bound end.
CPU_GRID = ((32, 32), (32, 64), (16, 64), (16, 128), (8, 128), (8, 256), (4, 256), (4, 512),
            (8, 16), (8, 32), (4, 64), (2, 128))
GPU_GRID = CPU_GRID + ((64, 64), (56, 128), (28, 256), (28, 512), (14, 512), (14, 1024),
                       (7, 1024), (7, 2048))
#: the small grid of ``--quick`` (tests, dry runs of benchmarks/gpu_check.sh).
QUICK_GRID = ((16, 32), (8, 64), (4, 128))
#: zoo models whose measured peak memory sets the memory rule (32x32 inputs: cheap).
MEMORY_MODELS = ("resnet18-cifar", "aa-resnet18-cifar", "eaanet-concat-longformer")
MIB = 2**20


def block_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(profile key, block type, extra config) for every block and, for blocks with an
    ``attention`` option, every kernel it accepts."""
    from convattn import create_block, list_attention, list_blocks

    out = []
    for block in list_blocks():
        kinds = []
        for kernel in list_attention():
            try:
                create_block(block, 64, 64, 1, attention=kernel, input_size=(16, 16))
                kinds.append(kernel)
            except Exception:  # noqa: BLE001 - no attention option, or not this kernel
                continue
        if kinds:
            out += [(f"{block}:{k}", block, {"attention": k}) for k in kinds]
        else:
            out.append((block, block, {}))
    return out


def _stem(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class _Trivial(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 1), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def _step_s(model: nn.Module, shape: tuple[int, int, int], *, batch: int, device: str,
            precision: str, channels_last: bool, warmup: int, repeats: int,
            threads: int | None) -> float:
    from search_space.measure import measure

    m = measure(model, batch=batch, input_size=shape, device=device, precision=precision,
                train=True, warmup=warmup, repeats=repeats, channels_last=channels_last,
                threads=threads, memory=False)
    return m.latency_ms["median"] / 1e3


def measure_profile(device: str = "auto", *, batch: int | None = None,
                    threads: int | None = 1, quick: bool = False,
                    progress: Callable[[str], None] | None = None,
                    resume_from: dict[str, Any] | None = None,
                    on_curve: Callable[[dict[str, Any]], None] | None = None
                    ) -> dict[str, Any]:
    """The profile of ``device`` as plain values (see :mod:`nas.evaluate.device_profile`).

    A full GPU profile takes minutes: ``on_curve`` gets the partial profile (``complete:
    false``) after each curve, to be saved, and ``resume_from`` (such a partial, measured
    with the same device and setting) is continued: its curves are kept, not re-measured.
    """
    from convattn import create_block
    from search_space.measure import device_name

    from .train import resolve_channels_last, resolve_device, resolve_precision

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    precision = resolve_precision("auto", dev)
    channels_last = resolve_channels_last("auto", dev)
    batch = batch or (32 if cuda else 4)
    # a GPU step after two warm-ups varies little: the median of 5 keeps a full H100
    # profile (17 curves x 20 points) near 2 minutes
    warmup, repeats = (2, 5) if cuda else (1, 3)
    threads = None if cuda else threads
    grid = QUICK_GRID if quick else (GPU_GRID if cuda else CPU_GRID)
    say = progress or (lambda _: None)
    timing = {"batch": batch, "device": str(dev), "precision": precision,
              "channels_last": channels_last, "warmup": warmup, "repeats": repeats,
              "threads": threads}

    head = {
        "version": PROFILE_VERSION, "kind": "device-profile",
        "device": {"type": dev.type, "name": device_name(dev),
                   "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "torch": str(torch.__version__),
                   "cuda": torch.version.cuda if cuda else None,
                   "threads": threads, "cpu_count": os.cpu_count(),
                   "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
        "setting": {"precision": precision, "channels_last": channels_last, "batch": batch,
                    "optimizer": "sgd_momentum", "warmup": warmup, "repeats": repeats,
                    "statistic": "median", "grid": [list(g) for g in grid],
                    "timer": "cuda events" if cuda else "time.perf_counter"},
    }
    variants = block_variants()
    curves = ["stem", *(key for key, _, _ in variants)]
    if resume_from is not None:
        check_resumable(resume_from, head)
        overhead = float(resume_from["overhead_s"])
        blocks: dict[str, list[dict[str, Any]]] = dict(resume_from["blocks"])
        say(f"continuing: {len(blocks)} of {len(curves)} curves measured before")
    else:
        overhead = _step_s(_Trivial(), (3, 8, 8), **timing)
        say(f"fixed overhead per step: {overhead * 1e3:.3g} ms")
        blocks = {}

    def save_partial() -> None:
        if on_curve is not None:
            on_curve({**head, "complete": False, "curves": curves,
                      "overhead_s": overhead, "blocks": blocks})

    if "stem" not in blocks:
        blocks["stem"] = [
            _point(_stem(ch), (3, side, side), 27 * ch * side * side, side, ch, overhead,
                   timing) for side, ch in grid]
        save_partial()
    for key, block, extra in variants:
        if key in blocks:
            continue
        points = []
        for side, ch in grid:
            try:
                model = create_block(block, ch, ch, 1, input_size=(side, side), **extra)
                macs = int(model.cost(side, side).macs)
                points.append(_point(model, (ch, side, side), macs, side, ch, overhead,
                                     timing))
            except Exception as err:  # noqa: BLE001 - a kernel that cannot run there
                if "out of memory" in str(err).lower() and cuda:
                    torch.cuda.empty_cache()
                continue
        # a kernel that runs nowhere on the grid is recorded as measured (no points), so
        # that a continued profile does not try it again
        blocks[key] = points
        save_partial()  # before it is said: a line on the screen is a curve on disk
        if points:
            say(f"{key}: {len(points)} points, "
                f"{min(p['seconds'] for p in points) * 1e3:.3g}-"
                f"{max(p['seconds'] for p in points) * 1e3:.3g} ms")
    memory = _memory_rule(dev, precision, channels_last, quick)
    say(f"memory: peak / estimate {memory['peak_over_estimate']:.3g}, "
        f"context {memory['context_bytes'] / MIB:.0f} MiB")
    return {**head, "complete": True, "overhead_s": overhead,
            "blocks": {k: v for k, v in blocks.items() if v}, "memory": memory}


def check_resumable(partial: dict[str, Any], head: dict[str, Any]) -> None:
    """UserError unless ``partial`` was measured on this device with this setting."""
    from ..errors import UserError

    device = partial.get("device", {})
    theirs = {"device": device.get("name"), "threads": device.get("threads"),
              **partial.get("setting", {})}
    ours = {"device": head["device"]["name"], "threads": head["device"]["threads"],
            **head["setting"]}
    differ = [k for k in ours if theirs.get(k) != ours[k]]
    if differ:
        k = differ[0]
        raise UserError(f"{partial.get('path', 'the partial profile')}: measured with {k} "
                        f"{theirs.get(k)!r}, this run's is {ours[k]!r}; continue it with the "
                        "same device and options, or give another --out")


def _point(model: nn.Module, shape: tuple[int, int, int], macs: int, side: int, ch: int,
           overhead: float, timing: dict[str, Any]) -> dict[str, Any]:
    seconds = _step_s(model, shape, **timing)
    return {"map": side, "channels": ch, "macs": macs,
            "seconds": max(MIN_POINT_S, seconds - overhead)}


def _memory_rule(dev: torch.device, precision: str, channels_last: bool,
                 quick: bool) -> dict[str, Any]:
    """Peak training memory / cost-model estimate over MEMORY_MODELS at batch 16."""
    from search_space.cost import estimate
    from search_space.measure import measure
    from search_space.zoo import load_zoo

    ratios, rows = [], []
    for name in MEMORY_MODELS[:1] if quick else MEMORY_MODELS:
        spec = load_zoo(name)
        est = estimate(spec, batch=16).train_memory_bytes
        m = measure(spec, batch=16, device=str(dev), precision=precision,
                    channels_last=channels_last, warmup=0, repeats=1, memory=True)
        peak = m.peak_reserved_bytes or m.peak_memory_bytes
        ratios.append(peak / est)
        rows.append({"model": name, "estimate_mb": est / MIB, "peak_mb": peak / MIB,
                     "method": m.memory_method})
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        # What the process holds beyond the caching allocator: context + workspaces.
        context = max(0, total - free - torch.cuda.memory_reserved(dev))
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        context = 0
    return {"device_bytes": int(total), "context_bytes": int(context),
            "peak_over_estimate": statistics.median(ratios), "batch": 16, "models": rows,
            "rule": "need = estimate x peak_over_estimate + context_bytes"}
