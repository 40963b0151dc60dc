"""One candidate, evaluated end to end without Ray: checks, then proxy training.

``evaluate_candidate(spec, study, ...)`` runs, in order:

1. the cheap checks (:mod:`nas.evaluate.checks`): analytic params / MACs / estimated training
   memory, then (only if those pass) measured latency and one-step training memory;
2. if a constraint is broken: status ``infeasible`` with ``violations`` and NO
   training (``on_epoch`` is never called, ``epochs_done`` is 0); except for a
   ``comparison`` (a baseline): it is measured in full and trained all the same, and
   keeps its ``violations`` (the search tells it infeasible, with its real accuracy);
3. else proxy training (:mod:`nas.evaluate.train`), calling ``on_epoch(epoch, metrics)`` after
   each epoch; ``True`` from it stops training (status ``stopped``, e.g. ASHA).

A trial's own failure never raises: a NaN/inf loss gives ``diverged``; CUDA OOM or a host
MemoryError (or a failed host allocation) gives ``oom``, which counts as infeasible on
memory (``violations["memory_mb"]``); anything else gives ``error`` with the message.
What is NOT the trial's fault propagates: a UserError about the study (missing dataset,
dataset/space mismatch), KeyboardInterrupt, and any exception raised by ``on_epoch``
itself (the caller's, e.g. Ray Tune stopping the function), re-raised unchanged.

``metrics["accuracy"]`` is the validation top-1 after the last epoch trained; it is
absent when no training ran (infeasible, or a failure before the first epoch).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..study import Study
from .checks import OOM_MIN_OVER_MB, is_oom, run_checks
from .data import DataBundle, cached_data
from .gpu_share import oom_context, release
from .train import (
    Diverged,
    OnEpoch,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    seed_everything,
    train,
)

STATUSES = ("ok", "stopped", "infeasible", "diverged", "oom", "error")


@dataclass
class TrialOutcome:
    """What one evaluation found; ``to_dict()`` is plain JSON-able values."""

    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, float] = field(default_factory=dict)
    message: str = ""
    epochs_done: int = 0
    wall_s: float = 0.0
    check_s: float = 0.0
    hash: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    #: per-epoch metrics, in order.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: how the checks' numbers were obtained (memory estimate method; once measured,
    #: the latency protocol and the memory method).
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """False when a constraint is broken (infeasible, or out of memory)."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _CallbackError(Exception):
    """Carries an exception raised by the caller's on_epoch past our handlers."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def evaluate_candidate(spec: Any, study: Study, *, seed: int = 0, device: str = "auto",
                       data: DataBundle | None = None, on_epoch: OnEpoch | None = None,
                       epochs: int | None = None,
                       data_dir: str | os.PathLike | None = None,
                       threads: int | None = None, comparison: bool = False) -> TrialOutcome:
    """Check, then train one candidate; see the module docstring. ``spec`` is a
    ModelSpec or anything ``search_space.load_spec`` takes; ``data`` a loaded bundle
    (else loaded once per process from ``study.data`` / ``data_dir``).

    On the CPU the trial runs with ``threads`` torch threads (default: the study's
    ``resources.cpus_per_trial``, at least 1), restored afterwards: measured latency
    depends on the thread count, so every trial of a study is measured alike whatever
    process runs it, and a 1-CPU trial does not oversubscribe a shared machine."""
    dev = resolve_device(device)
    if dev.type != "cpu":
        return _evaluate(spec, study, seed, dev, data, on_epoch, epochs, data_dir,
                         comparison)
    wanted = threads or max(1, int(study.resources.cpus_per_trial))
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        return _evaluate(spec, study, seed, dev, data, on_epoch, epochs, data_dir,
                         comparison)
    finally:
        torch.set_num_threads(before)


def _evaluate(spec: Any, study: Study, seed: int, dev: torch.device,
              data: DataBundle | None, on_epoch: OnEpoch | None, epochs: int | None,
              data_dir: str | os.PathLike | None, comparison: bool = False) -> TrialOutcome:
    start = time.perf_counter()
    precision = resolve_precision(study.training.precision, dev)
    channels_last = resolve_channels_last(study.training.channels_last, dev)
    out = TrialOutcome(status="error", provenance=_provenance(dev, precision, study, seed))
    model = None
    checks = None

    def record(epoch: int, metrics: dict[str, Any]) -> Any:
        out.history.append(dict(metrics))
        out.epochs_done = epoch
        if on_epoch is None:
            return None
        try:
            return on_epoch(epoch, metrics)
        except BaseException as err:  # noqa: BLE001 - the caller's, handed back unchanged
            raise _CallbackError(err) from err

    try:
        spec = _load(spec)
        out.hash = spec.hash()
        _check_shape(spec, study)
        seed_everything(seed)
        model = spec.build()
        checks = run_checks(spec, study, model, device=dev, precision=precision,
                            channels_last=channels_last, measure_all=comparison)
        out.metrics.update(checks.metrics)
        out.protocol = checks.protocol
        out.check_s = checks.check_s
        if not checks.feasible and (checks.oom or not comparison):
            out.status = "infeasible"
            out.violations = checks.violations
            out.message = checks.message or describe_violations(checks.violations,
                                                                 study.constraints)
            return out
        bundle = data if data is not None else cached_data(study.data, data_dir)
        study.check_data(bundle)
        result = train(model, bundle, study.training, device=dev, seed=seed, epochs=epochs,
                       on_epoch=record, workers=study.data.workers)
        out.status = "stopped" if result.stopped else "ok"
        out.metrics.update(_final(result.history))
        if checks.violations:  # a comparison over the limits: trained, marked so
            out.violations = checks.violations
            out.message = describe_violations(checks.violations, study.constraints)
    except _CallbackError as err:
        raise err.original from None
    except UserError:
        raise
    except Diverged as err:
        out.status = "diverged"
        out.message = str(err)
        out.metrics.update(_final(out.history))
    except Exception as err:  # noqa: BLE001 - a trial's failure must not end a search
        out.metrics.update(_final(out.history))
        if is_oom(err):
            out.status = "oom"
            est = out.metrics.get("memory_est_mb", 0.0)
            out.violations = {"memory_mb": float(max(
                est - study.constraints.get("memory_mb", 0.0), OOM_MIN_OVER_MB))}
            out.message = f"out of memory{oom_context()}: {_one_line(err)}"
        else:
            out.status = "error"
            out.message = _one_line(err)
    finally:
        out.wall_s = time.perf_counter() - start
        del model
        release(dev)  # a worker runs trial after trial: the next one's peak is its own
    return out


def describe_violations(violations: dict[str, float], limits: dict[str, float]) -> str:
    """"params 2.5e+06 > max 2e+06; latency_ms 31.2 > max 20" (value = limit + over)."""
    parts = [f"{name} {limits[name] + over:.4g} > max {limits[name]:.4g}"
             for name, over in violations.items() if name in limits]
    return "infeasible: " + "; ".join(parts)


def _load(spec: Any):
    from search_space.spec import ModelSpec

    if isinstance(spec, ModelSpec):
        return spec
    from search_space import load_spec

    return load_spec(spec)


def _check_shape(spec: Any, study: Study) -> None:
    got = (spec.input.channels, tuple(spec.input.size), spec.classes)
    want = (study.input_channels, study.input_size, study.classes)
    if got != want:
        raise ValueError(f"spec takes {got[0]}x{got[1][0]}x{got[1][1]} with {got[2]} classes "
                         f"but the study's data is {want[0]}x{want[1][0]}x{want[1][1]} with "
                         f"{want[2]} classes (adapt it with spec.with_data)")


def _final(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last epoch's accuracy and losses, plus the best accuracy seen."""
    if not history:
        return {}
    last = history[-1]
    return {"accuracy": last["accuracy"], "train_loss": last["train_loss"],
            "val_loss": last["val_loss"],
            "best_accuracy": max(h["accuracy"] for h in history)}


def _provenance(dev: torch.device, precision: str, study: Study, seed: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"device": str(dev), "device_name": name, "torch": torch.__version__,
            "precision": precision, "batch_size": study.training.batch_size, "seed": seed,
            "threads": torch.get_num_threads()}


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
