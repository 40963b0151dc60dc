"""Peak memory and time of one training step (forward + backward), each CPU case in a fresh
process.

    from _memory import measure_case
    result = measure_case(Path(__file__), "build_kernel", {"kernel": "full", "size": 32},
                          device="cpu", threads=2, mem_cap=16 << 30)

Why a subprocess per case: on the CPU there is no allocator peak statistic, and the
resident set of a process that once held 10 GB does not shrink reliably, so each
(case, size) runs in a new interpreter that measures only itself. The child imports
the benchmark script by path, calls ``builder(config, device)`` to get a :class:`Case`
(a module, its inputs, a description) and then:

1. runs one warm-up step (lazy allocations, thread pools, oneDNN caches);
2. drops every gradient, returns freed heap to the OS (``malloc_trim``) and records the
   baseline: on CPU the resident set (VmRSS) with the peak (VmHWM) reset through
   ``/proc/self/clear_refs``, glibc set to serve every allocation of 128 KiB or more by
   its own mmap up to here, so that RSS follows the live tensors (``EXACT_RSS_ENV``);
   on CUDA ``memory_allocated`` after ``reset_peak_memory_stats``. The baseline holds
   imports, parameters, inputs and the output gradient;
3. runs ONE measured step: peak = VmHWM - baseline VmRSS on CPU (VmHWM is the
   high-water mark behind ``ru_maxrss``, but resettable and per address space;
   ``ru_maxrss`` cannot be reset and inherits the parent's peak across vfork+exec), or
   max_memory_allocated - baseline on CUDA;
4. times further steps with malloc back to its steady-state behaviour (after one untimed
   re-warm step unless steps are expensive): median of up to
   ``repeats``, at least ``min_repeats`` unless the steps already took 3x
   ``time_budget_s``, stopping once ``time_budget_s`` is spent; CUDA is synchronised
   around each step.

A step is ``out = module(*inputs); out.backward(grad)`` with a fixed random ``grad``
(so that no op sees an expanded gradient), then every gradient is dropped.

On CPU the child caps its address space (``RLIMIT_AS`` = address space after imports +
``mem_cap``) so a case that would not fit fails its allocation instead of pushing the
machine into swap or the OOM killer; such a case is reported as ``"oom"`` (the caller
adds the analytic attention bytes). CUDA reserves large virtual ranges at start-up, so
there the cap is not set and torch's OutOfMemoryError marks ``"oom"``.

On CUDA the cases run in the calling process instead (the allocator's own counters
measure one case exactly there, its cache emptied before the baseline): a fresh
process costs ~12 s of CUDA start-up per case on an H100, which spent
benchmarks/gpu_check.sh's whole time limit on four cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GiB = 1 << 30
_RESULT = "RESULT "

#: The method strings written into every result file, so a reader knows what a number is.
METHOD = {
    "cpu": ("peak resident-set growth of ONE forward+backward step in a fresh process: "
            "VmHWM after the step minus VmRSS before it, with the high-water mark reset via "
            "/proc/self/clear_refs after a warm-up step and malloc_trim, and glibc's mmap "
            "threshold fixed at 128 KiB for that step so that RSS follows the live tensors "
            "rather than the recycled heap (where /proc is unavailable: the growth of "
            "ru_maxrss over that step, a lower bound); the baseline holds imports, "
            "parameters, inputs and the output gradient"),
    "cuda": ("torch.cuda.max_memory_allocated during ONE forward+backward step after "
             "reset_peak_memory_stats, minus memory_allocated before it (parameters, "
             "inputs and output gradient are in the baseline)"),
    "time": ("wall time of one forward+backward step (CUDA synchronised), median over the "
             "timed steps after the warm-up and memory steps, malloc back at its steady-state "
             "thresholds (steps that take over 3x the time budget are timed once); on CPU "
             "also the process CPU time of the step (cpu_time_ms), which other processes "
             "on the same cores disturb far less than wall time when torch runs one thread"),
    "oom": ("CPU: the child's address space is capped with RLIMIT_AS; a failed allocation "
            "(or a kill by signal) is recorded as status 'oom'. CUDA: OutOfMemoryError"),
}


@dataclass
class Case:
    """What a builder returns: a module, the inputs of one step, and a description."""

    module: Any
    inputs: tuple[Any, ...]
    info: dict[str, Any] = field(default_factory=dict)


def measure_case(script: Path, builder: str, config: dict[str, Any], *, device: str = "cpu",
                 threads: int | None = None, mem_cap: int = 16 * GiB, repeats: int = 5,
                 min_repeats: int = 3, time_budget_s: float = 5.0,
                 timeout_s: float = 900.0) -> dict[str, Any]:
    """Run ``script``'s ``builder(config, device)`` in a fresh process; return its result.

    The result has ``status`` ("ok", "oom", "error" or "timeout"), ``peak_bytes``,
    ``baseline_bytes``, ``time_s`` and ``cpu_time_s`` (median, min, max, n, samples),
    ``info`` (the Case's) and ``error`` (one line) where the status is not ok.
    """
    job = {"script": str(script), "builder": builder, "config": config, "device": device,
           "threads": threads, "mem_cap": mem_cap, "repeats": repeats,
           "min_repeats": min_repeats, "time_budget_s": time_budget_s}
    if device.startswith("cuda"):  # see the module docstring
        return _in_this_process(job)
    cmd = [sys.executable, str(Path(__file__).resolve()), json.dumps(job)]
    env = {**os.environ, **(EXACT_RSS_ENV if device == "cpu" else {})}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result within {timeout_s:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT):])
    if proc.returncode < 0:
        # SIGKILL here is the kernel's OOM killer in practice (the cap did not bite first).
        return {"status": "oom", "error": f"killed by signal {-proc.returncode}"}
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"status": "error", "error": f"exit {proc.returncode}: {tail}"}


# -- child side ---------------------------------------------------------------------------

def _status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, VmSize), or None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _libc():
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS so the baseline RSS holds only live memory."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


#: glibc reads these at start-up: every allocation of 128 KiB or more is its own mmap,
#: returned to the OS when freed, so the resident set follows the live tensors (to the
#: page) instead of glibc's recycled heap, whose size varies by tens of MiB between
#: identical runs. Set for the child's whole life up to the memory step; the heap then
#: never holds large free chunks that the measured step could reuse unseen.
EXACT_RSS_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10), "MALLOC_TRIM_THRESHOLD_": str(128 << 10)}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3          # mallopt parameters (malloc.h)


def _steady_malloc() -> bool:
    """After the memory step: 32 MiB / 64 MiB thresholds, those glibc's dynamic ones reach
    in a warmed-up process, so that timed steps do not pay a page fault per tensor.
    False where mallopt is unavailable (not glibc)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
                and libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20))


def _cap_address_space(cap: int) -> None:
    import resource
    size_kib = _status_kib("VmSize")
    if size_kib is None:
        return
    limit = size_kib * 1024 + cap
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _is_oom(err: BaseException) -> bool:
    import torch
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def _load_builder(script: str, name: str) -> Callable[..., Case]:
    import importlib.util
    spec = importlib.util.spec_from_file_location("_bench_script", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_script"] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


class _Stepper:
    """One forward+backward of a Case with a fixed output gradient, gradients dropped after."""

    def __init__(self, case: Case, sync: Callable[[], None]):
        import torch
        self.case, self.sync, self.grad = case, sync, None
        self.leaves = [t for t in case.inputs if isinstance(t, torch.Tensor)]
        self.leaves += list(case.module.parameters())

    def __call__(self) -> None:
        import torch
        out = self.case.module(*self.case.inputs)
        if self.grad is None:
            self.grad = torch.randn_like(out)
        out.backward(self.grad)
        del out
        for t in self.leaves:
            t.grad = None
        self.sync()


def _summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    return {"median": median, "min": ordered[0], "max": ordered[-1], "n": len(samples),
            "samples": samples}


def _child(job: dict[str, Any]) -> dict[str, Any]:
    import gc
    import resource
    import time

    import torch
    device = torch.device(job["device"])
    if job["threads"]:
        torch.set_num_threads(int(job["threads"]))
    builder = _load_builder(job["script"], job["builder"])
    cuda = device.type == "cuda"
    if not cuda:
        _cap_address_space(int(job["mem_cap"]))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result: dict[str, Any] = {"status": "ok", "threads": torch.get_num_threads()}
    phase = "build"
    try:
        case = builder(job["config"], device)
        result["info"] = case.info
        step = _Stepper(case, sync)
        phase = "warm-up step"
        step()
        gc.collect()
        phase = "memory step"
        started = time.perf_counter()
        if cuda:
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            result["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
            result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
            result["baseline_bytes"] = base
        else:
            exact = all(os.environ.get(k) == v for k, v in EXACT_RSS_ENV.items())
            _malloc_trim()
            if _reset_peak_rss() and _status_kib("VmRSS") is not None:
                base = _status_kib("VmRSS")
                step()
                result["peak_bytes"] = (_status_kib("VmHWM") - base) * 1024
                result["memory_method"] = "VmHWM-reset" + ("+exact-rss" if exact else "")
            else:
                # Fallback: the peak cannot be reset; growth of ru_maxrss is then a lower bound.
                base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                step()
                result["peak_bytes"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        - base) * 1024
                result["memory_method"] = "ru_maxrss-growth"
            result["baseline_bytes"] = base * 1024
            # Re-warm untimed so the heap grows to its steady size; a step slower than the
            # whole time budget is timed as it comes (its page faults are a small share).
            if _steady_malloc() and time.perf_counter() - started < job["time_budget_s"]:
                step()
        phase = "timed steps"
        samples: list[float] = []
        cpu_samples: list[float] = []
        budget = job["time_budget_s"]
        while len(samples) < job["repeats"]:
            spent = sum(samples)
            # Cheap steps: at least min_repeats, then until the budget is spent. A step
            # that alone eats the budget several times over is timed once or twice only.
            if spent >= budget and (len(samples) >= job["min_repeats"] or spent >= 3 * budget):
                break
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            samples.append(time.perf_counter() - t0)
            cpu_samples.append(time.process_time() - c0)
        result["time_s"] = _summary(samples)
        # CPU seconds of the whole process: with one thread, the compute itself, and far
        # less sensitive than wall time to other processes sharing the cores.
        result["cpu_time_s"] = _summary(cpu_samples)
    except Exception as err:  # noqa: BLE001 - the parent needs every failure as data
        result["status"] = "oom" if _is_oom(err) else "error"
        message = str(err).strip().splitlines()
        result["error"] = f"{phase}: {type(err).__name__}: {message[0] if message else ''}"
    return result


def _in_this_process(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nas.evaluate.gpu_share import release

    _import_siblings_of(job["script"])
    before = torch.get_num_threads()
    try:
        return _child(job)
    finally:
        torch.set_num_threads(before)
        release(torch.device(job["device"]))


def _import_siblings_of(script: str) -> None:
    """The benchmark scripts import siblings (``from _memory import ...``)."""
    folder = str(Path(script).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def main() -> None:
    job = json.loads(sys.argv[1])
    _import_siblings_of(job["script"])
    result = _child(job)
    sys.stdout.flush()
    print(_RESULT + json.dumps(result), flush=True)
    os._exit(0)  # skip interpreter teardown (large frees) once the result is out


if __name__ == "__main__":
    main()
