"""How attention memory and time scale with the map size: kernels, timm, EAANet's ResNet-18.

    python benchmarks/attention_scaling.py                    # CPU defaults (~10-20 min)
    python benchmarks/attention_scaling.py --device cuda --full   # GPU, inputs up to 512 px

One run measures three things, each (case, size) in a fresh subprocess on the CPU, in
this process on CUDA (benchmarks/_memory.py: peak memory and time of ONE
forward+backward step):

1. ``kernels``: every registered attention kernel (full, relative, local, linformer,
   linear) plus ``full-materialised`` (convattn's ``full`` kernel forced onto SDPA's
   math backend, i.e. softmax(QK^T)V with the logits built, the "full attention" of
   the papers) on q, k, v maps of 8x8 ... 128x128 (batch 4, dk = dv = 64, 4 heads).
2. ``timm``: convattn's ``relative`` kernel inside a layer against
   ``timm.layers.BottleneckAttn`` (2D relative logits, same dim, heads, feat_size) on
   the same (B, 64, H, W) input: ``convattn-qkv-relative`` has exactly timm's structure
   (a bias-free 1x1 qkv conv, the kernel, no output projection); ``convattn-aaconv`` is
   the AA block's fully attentional ``AAConv2d`` (qkv and head-mixing 1x1 convs with
   bias), which adds one 64x64 1x1 conv on top.
3. ``resnet``: EAANet's experiment, ResNet-18 (CIFAR style) with no attention, AA with
   full (materialised) attention, AA with relative attention, EAA with Longformer
   (local) and Linformer attention, plus EAA with full attention as a same-placement
   control, materialised and as torch's SDPA picks it (fused: the eaa block's tokens
   are channel-last), at input sizes 32 ... 128 px (``--full``: up to 512), batch 4;
   built from the zoo specs (zoo:resnet18-cifar, zoo:aa-resnet18-cifar,
   zoo:eaanet-concat-*) with the input size changed (size-bound kernels are rebuilt
   for the new map sizes by the builder).

A case that does not fit the memory cap is recorded as ``oom`` with its analytic
attention bytes. Results go to benchmarks/results/attention_scaling.{json,png}; the
expectations (efficient kernels <= 1/10 of full attention's memory at 128x128;
convattn's relative no slower and no larger than timm's) are checked and written
under ``checks``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import METHOD, Case, GiB, measure_case  # noqa: E402
from _scaling_report import MIB, fmt_bytes, markdown, plot, print_checks, run_checks  # noqa: E402

SCRIPT = Path(__file__).resolve()
RESULTS = SCRIPT.parent / "results"
KERNELS = ("full", "full-materialised", "relative", "local", "linformer", "linear")
TIMM_CASES = ("timm-bottleneckattn", "convattn-qkv-relative", "convattn-aaconv")
#: model variant -> (zoo entry, overrides of every attention block, SDPA math backend only).
#: "-materialised": SDPA limited to its math backend, the (HW)^2 logits built, as the
#: papers' "normal" attention. "aa-full" / "eaa-full-sdpa": torch's choice; the kernel
#: hands SDPA contiguous tokens, so the fused (flash) kernel runs and never builds them.
RESNETS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "resnet18": ("resnet18-cifar", {}, False),
    "aa-full-materialised": ("aa-resnet18-cifar", {"attention": "full"}, True),
    "aa-full": ("aa-resnet18-cifar", {"attention": "full"}, False),
    "aa-relative": ("aa-resnet18-cifar", {}, False),
    "eaa-local": ("eaanet-concat-longformer", {}, False),
    "eaa-linformer": ("eaanet-concat-linformer", {}, False),
    "eaa-full-materialised": ("eaanet-concat-longformer", {"attention": "full"}, True),
    "eaa-full-sdpa": ("eaanet-concat-longformer", {"attention": "full"}, False),
}


# -- builders (run in the child process) ---------------------------------------------------

def _kernel(name: str, cfg: dict[str, Any]):
    import convattn
    base = "full" if name == "full-materialised" else name
    return convattn.create_attention(base, heads=cfg["heads"], dk=cfg["channels"],
                                     dv=cfg["channels"], input_size=(cfg["size"], cfg["size"]))


def kernel_attention_bytes(cfg: dict[str, Any]) -> int:
    """Analytic bytes of the attention tensors of one kernel call, whole batch."""
    import torch
    with torch.device("meta"):
        kernel = _kernel(cfg["kernel"], cfg)
    hw = (cfg["size"], cfg["size"])
    return kernel.cost(hw, hw).attention_bytes * cfg["batch"]


def _math_only(module: Any) -> Any:
    """``module`` with SDPA restricted to its math backend: softmax(QK^T)V, logits built."""
    from torch import nn
    from torch.nn.attention import SDPBackend, sdpa_kernel

    class MathPath(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            with sdpa_kernel(SDPBackend.MATH):
                return self.inner(*args)

    return MathPath(module)


def build_kernel(cfg: dict[str, Any], device: Any) -> Case:
    """q, k, v (B, Nh, dkh, H, W) with gradients, mixed by one kernel."""
    import torch

    torch.manual_seed(0)
    kernel = _kernel(cfg["kernel"], cfg).to(device)
    if cfg["kernel"] == "full-materialised":
        kernel = _math_only(kernel)
    b, s, heads, d = cfg["batch"], cfg["size"], cfg["heads"], cfg["channels"] // cfg["heads"]
    q, k, v = (torch.randn(b, heads, d, s, s, device=device, requires_grad=True)
               for _ in range(3))
    params = sum(p.numel() for p in kernel.parameters())
    return Case(kernel, (q, k, v), {"params": params,
                                    "attention_bytes": kernel_attention_bytes(cfg)})


def _qkv_relative(cfg: dict[str, Any]):
    """timm's BottleneckAttn structure with convattn's relative kernel inside."""
    from torch import nn

    from convattn.attention import merge_heads, split_heads

    class QkvRelative(nn.Module):
        def __init__(self):
            super().__init__()
            c = cfg["channels"]
            self.c, self.heads = c, cfg["heads"]
            self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)    # timm: qkv_bias=False
            self.attn = _kernel("relative", cfg)

        def forward(self, x):
            q, k, v = self.qkv(x).split(self.c, dim=1)
            return merge_heads(self.attn(*(split_heads(t, self.heads) for t in (q, k, v))))

    return QkvRelative()


def build_timm(cfg: dict[str, Any], device: Any) -> Case:
    """One attention layer on x (B, C, H, W) with gradients: timm's or convattn's."""
    import torch

    name, c, s = cfg["case"], cfg["channels"], cfg["size"]
    torch.manual_seed(0)
    if name == "timm-bottleneckattn":
        from timm.layers.bottleneck_attn import BottleneckAttn
        layer = BottleneckAttn(c, c, feat_size=(s, s), num_heads=cfg["heads"])
    elif name == "convattn-qkv-relative":
        layer = _qkv_relative(cfg)
    elif name == "convattn-aaconv":
        from convattn.blocks.aa import AAConv2d
        layer = AAConv2d(c, c, 3, 1, dk=c, dv=c, heads=cfg["heads"], attention="relative",
                         position="relative", input_size=(s, s))
    else:
        raise ValueError(f"unknown timm-comparison case {name!r}; known: {TIMM_CASES}")
    layer = layer.to(device)
    x = torch.randn(cfg["batch"], c, s, s, device=device, requires_grad=True)
    attn = cfg["heads"] * (s * s) ** 2 * 4 * cfg["batch"]   # the (HW)^2 logits, all variants
    return Case(layer, (x,), {"params": sum(p.numel() for p in layer.parameters()),
                              "attention_bytes": attn})


def resnet_spec(variant: str, size: int):
    """The zoo spec of ``variant`` at input ``size`` px, attention overrides applied."""
    import search_space
    from search_space.zoo import list_zoo

    entry, overrides, _ = RESNETS[variant]
    if entry not in list_zoo():
        raise LookupError(f"zoo entry {entry!r} is missing; known: {', '.join(list_zoo())}")
    data = search_space.load_spec(f"zoo:{entry}").to_dict()
    data["input"]["size"] = [size, size]
    data["name"] = f"{variant}-{size}px"
    for stage in data["stages"]:
        for block in stage["blocks"]:
            if block["type"] in ("aa", "eaa"):
                block.update(overrides)
    return search_space.load_spec(data)


def resnet_attention_bytes(variant: str, size: int, batch: int) -> int:
    """Sum of the attention tensors of every block (all are kept for backward)."""
    spec = resnet_spec(variant, size)
    graph = spec.graph(costs=True)
    return sum(int(d["attention_bytes"]) for _, d in graph.nodes(data=True)) * batch


def build_resnet(cfg: dict[str, Any], device: Any) -> Case:
    """A whole ResNet-18 variant in train mode on images (B, 3, S, S); gradient on logits."""
    import torch

    torch.manual_seed(0)
    spec = resnet_spec(cfg["variant"], cfg["size"])
    model = spec.build().to(device).train()
    if RESNETS[cfg["variant"]][2]:
        model = _math_only(model)
    x = torch.randn(cfg["batch"], 3, cfg["size"], cfg["size"], device=device)
    return Case(model, (x,), {
        "params": sum(p.numel() for p in model.parameters()),
        "attention_bytes": resnet_attention_bytes(cfg["variant"], cfg["size"], cfg["batch"])})


# -- the run (parent process) --------------------------------------------------------------

def _environment(device: str, threads: int) -> dict[str, Any]:
    import torch

    from search_space.measure import device_name
    env: dict[str, Any] = {
        "device": device, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu": device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "threads": threads, "load_average_start": _load_average()}
    try:
        import timm
        env["timm"] = timm.__version__
    except ImportError:
        env["timm"] = None
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    else:
        env["device_name"] = env["cpu"]
    return env


def _load_average() -> list[float] | None:
    """1, 5, 15-minute load: timings on a shared machine are slower under load."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _record(kind: str, config: dict[str, Any], result: dict[str, Any],
            analytic: int | None, device: str) -> dict[str, Any]:
    row = {"part": kind, **config, "device": device, "status": result["status"]}
    info = result.get("info", {})
    row["params"] = info.get("params")
    row["attention_bytes_analytic"] = info.get("attention_bytes", analytic)
    row["peak_bytes"] = result.get("peak_bytes") if result["status"] == "ok" else None
    row["baseline_bytes"] = result.get("baseline_bytes")
    for key, name in (("time_s", "time_ms"), ("cpu_time_s", "cpu_time_ms")):
        stats = result.get(key) or {}
        row[name] = round(1000 * stats["median"], 3) if stats else None
        row[name + "_min"] = round(1000 * stats["min"], 3) if stats else None
        row[name + "_max"] = round(1000 * stats["max"], 3) if stats else None
    row["repeats"] = (result.get("time_s") or {}).get("n")
    row["memory_method"] = result.get("memory_method", "cuda" if "peak_reserved_bytes" in result
                                      else None)
    if "peak_reserved_bytes" in result:
        row["peak_reserved_bytes"] = result["peak_reserved_bytes"]
    if result.get("error"):
        row["error"] = result["error"]
    return row


def _print_row(row: dict[str, Any]) -> None:
    name = row.get("kernel") or row.get("case") or row.get("variant")
    if row["status"] == "ok":
        what = f"peak {fmt_bytes(row['peak_bytes']):>11}  time {row['time_ms']:>10.1f} ms"
        if row["cpu_time_ms"] is not None and row["device"] == "cpu":
            what += f"  cpu {row['cpu_time_ms']:>10.1f} ms"
    else:
        what = (f"{row['status'].upper()} (analytic attention "
                f"{fmt_bytes(row['attention_bytes_analytic'])}) {row.get('error', '')}")
    print(f"  {row['part']:<8} {name:<22} {row['size']:>4}  {what}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when available, else cpu (default)")
    p.add_argument("--parts", nargs="+", default=["kernels", "timm", "resnet"],
                   choices=("kernels", "timm", "resnet"))
    p.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128],
                   help="map sides of the kernel and timm parts (default 8 16 32 64 128)")
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    p.add_argument("--input-sizes", nargs="+", type=int, default=None,
                   help="ResNet input sides (default 32 64 128; with --full 32 ... 512)")
    p.add_argument("--variants", nargs="+", default=list(RESNETS), choices=list(RESNETS))
    p.add_argument("--full", action="store_true",
                   help="the paper's full range: ResNet inputs up to 512 px, more repeats")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=64, help="dk = dv = channels")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed steps per case, at most (default 5; 20 with --full)")
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--time-budget", type=float, default=5.0,
                   help="stop timing a case after this many seconds once min-repeats ran")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in each case (default: 1 on CPU, so that the "
                        "per-step CPU time is the compute itself on a shared machine; "
                        "torch's default on CUDA)")
    p.add_argument("--mem-cap-gb", type=float, default=16.0,
                   help="CPU: address-space cap per case beyond its start-up size; lowered "
                        "to the available memory minus 1 GiB")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    p.add_argument("--out", type=Path, default=RESULTS / "attention_scaling.json")
    args = p.parse_args(argv)
    if args.input_sizes is None:
        args.input_sizes = [32, 64, 128, 256, 512] if args.full else [32, 64, 128]
    if args.repeats is None:
        args.repeats = 20 if args.full else 5
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here; use --device cpu")
    threads = args.threads or (1 if device == "cpu" else torch.get_num_threads())
    # On CPU with one thread the process CPU time is the step's compute and is robust to
    # other processes on the cores; otherwise (threads spin, or a GPU) wall time.
    time_key = "cpu_time_ms" if device == "cpu" and threads == 1 else "time_ms"
    cap = int(args.mem_cap_gb * GiB)
    available = _mem_available()
    if device == "cpu" and available is not None:
        cap = min(cap, max(available - GiB, GiB))
    settings = {"batch": args.batch, "channels": args.channels, "heads": args.heads,
                "sizes": args.sizes, "input_sizes": args.input_sizes,
                "repeats": args.repeats, "min_repeats": args.min_repeats,
                "time_budget_s": args.time_budget, "time_statistic": time_key,
                "mem_cap_bytes": cap if device == "cpu" else None,
                "kernel_defaults": {"local": {"window": 7, "global_tokens": 1},
                                    "linformer": {"proj_dim": 256, "share_kv": True},
                                    "linear": {"scale": True}}}
    result: dict[str, Any] = {
        "benchmark": "attention_scaling",
        "command": "python benchmarks/attention_scaling.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": _environment(device, threads),
        "method": {"memory": METHOD["cuda" if device == "cuda" else "cpu"],
                   "time": METHOD["time"], "oom": METHOD["oom"],
                   "step": "out = module(*inputs); out.backward(fixed random grad); grads "
                           "dropped (parameter and input grads are inside the peak)",
                   "attention_bytes_analytic": "the kernels' / blocks' own cost formula: "
                           "bytes of the attention tensors (logits/weights, float32) for "
                           "the whole batch, summed over blocks for a model"},
        "settings": settings, "rows": [], "checks": []}
    common = {"device": device, "threads": threads, "mem_cap": cap, "repeats": args.repeats,
              "min_repeats": args.min_repeats, "time_budget_s": args.time_budget,
              "timeout_s": args.timeout}
    base = {"batch": args.batch, "channels": args.channels, "heads": args.heads}
    # Size-major order: the cases compared with each other run back to back, under the
    # same load of the machine.
    jobs: list[tuple[str, str, dict[str, Any]]] = []
    if "kernels" in args.parts:
        jobs += [("kernels", "build_kernel", {**base, "kernel": k, "size": s})
                 for s in args.sizes for k in args.kernels]
    if "timm" in args.parts:
        jobs += [("timm", "build_timm", {**base, "case": c, "size": s})
                 for s in args.sizes for c in TIMM_CASES]
    if "resnet" in args.parts:
        jobs += [("resnet", "build_resnet", {"batch": args.batch, "variant": v, "size": s})
                 for s in args.input_sizes for v in args.variants]
    started = time.perf_counter()
    print(f"attention_scaling on {device} ({threads} threads), {len(jobs)} cases", flush=True)
    tmp = args.out.with_suffix(".json.tmp")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for part, builder, config in jobs:
        res = measure_case(SCRIPT, builder, config, **common)
        analytic = None
        if res["status"] != "ok" and "info" not in res:
            analytic = _analytic(part, config)
        row = _record(part, config, res, analytic, device)
        result["rows"].append(row)
        _print_row(row)
        tmp.write_text(json.dumps(result, indent=1))   # partial results survive a crash
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["environment"]["load_average_end"] = _load_average()
    result["checks"] = run_checks(result["rows"], check_size=max(args.sizes),
                                  min_attention_bytes=16 * MIB,
                                  time_key=settings["time_statistic"])
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    tmp.unlink(missing_ok=True)
    plot(result, args.out.with_suffix(".png"))
    print("\n" + markdown(result))
    print_checks(result["checks"])
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {result['elapsed_s']} s")
    return result


def _analytic(part: str, config: dict[str, Any]) -> int | None:
    """Analytic attention bytes for a case whose child died before reporting them."""
    try:
        if part == "kernels":
            return kernel_attention_bytes(config)
        if part == "timm":
            return config["heads"] * config["size"] ** 4 * 4 * config["batch"]
        return resnet_attention_bytes(config["variant"], config["size"], config["batch"])
    except Exception:  # noqa: BLE001 - a missing number must not lose the other results
        return None


if __name__ == "__main__":
    main()
