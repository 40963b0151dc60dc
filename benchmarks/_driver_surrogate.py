"""The deterministic surrogate trials of ``driver_scale.py``: a study's candidates with
durations from the cost model's MACs and metrics from a fixed function of the spec hash.

- MACs: the blocks' own analytic formulas (``Block.cost``, what ``search_space.cost`` and
  ``spec.graph(costs=True)`` sum) plus the stem conv; each distinct block (type, widths,
  stride, options, map size) is built once on the meta device and cached, so a candidate
  costs a spec resolve (~1 ms) instead of a costed graph (~40 ms);
- duration: ``(macs / median macs of the space) ** 0.7 x (0.8 .. 1.2)`` from the hash,
  scaled so that the median of 64 random candidates takes ``trial_seconds``; 5% of it
  the checks, the rest split evenly over the study's epochs;
- infeasible: MACs over the study's ``macs`` limit, or a latency surrogate (proportional
  to MACs) over its ``latency_ms`` limit: told after the checks alone (2% of
  ``trial_seconds``), never trained, like the real checks;
- accuracy: a final value in 0.55 .. 0.95 from the hash (a little higher for more MACs),
  reached at the last epoch and lower before it, so ASHA's rungs have something to cut.

Ray workers never import torch: :class:`Plans` (one Ray actor holding the surrogate) hands
each trial its report plan, and :func:`ray_trial` sleeps through it.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from typing import Any

CHECK_SHARE = 0.05  # of a trained trial's duration: the checks and the model build
INFEASIBLE_SHARE = 0.02  # of trial_seconds: an infeasible candidate's checks


def _unit(h: str, salt: str) -> float:
    """A fixed number in [0, 1) for a hash and a salt."""
    digest = hashlib.sha256(f"{salt}:{h}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


class Surrogate:
    """Report plans of a study's candidates, ``trial_seconds`` for the median one."""

    def __init__(self, study: Any, trial_seconds: float, calibration: int = 64):
        import optuna

        self.study = study
        self.trial_seconds = float(trial_seconds)
        self.epochs = int(study.training.epochs)
        self.primary = study.primary.metric
        self._blocks: dict[tuple, int] = {}
        scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        specs = [study.space.sample(scratch.ask()) for _ in range(calibration)]
        self.median_macs = float(statistics.median(self.macs(s) for s in specs))
        self._scale = 1.0
        self._scale = 1.0 / statistics.median(self._factor(s) for s in specs)

    def _factor(self, spec: Any) -> float:
        """A trained candidate's duration in units of ``trial_seconds``."""
        ratio = self.macs(spec) / self.median_macs
        return self._scale * ratio ** 0.7 * (0.8 + 0.4 * _unit(spec.hash(), "wall"))

    def macs(self, spec: Any) -> int:
        from convattn.cost import conv_macs

        res = spec.resolve()
        total = 0
        stem = res.stem
        if stem["kind"] != "none":
            hw = res.stem_shape[1:]
            total += conv_macs(res.input_shape[0], stem["channels"], stem["kernel"], hw)
        for b in res.blocks:
            key = (b.type, b.in_ch, b.out_ch, b.stride, tuple(b.in_size),
                   json.dumps(b.given, sort_keys=True, default=str))
            if key not in self._blocks:
                self._blocks[key] = _block_macs(b)
            total += self._blocks[key]
        return total

    def plan(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The reports a trial of ``config`` sends, each with its ``trial_wall_s``."""
        from search_space import ModelSpec

        spec = ModelSpec.from_dict(config["spec"])
        h = spec.hash()
        macs = self.macs(spec)
        ratio = macs / self.median_macs
        limits = self.study.constraints
        latency = 10.0 * ratio * (0.8 + 0.4 * _unit(h, "latency"))
        metrics: dict[str, Any] = {"macs": macs, "latency_ms": latency}
        violations = {name: value - limits[name] for name, value in metrics.items()
                      if name in limits and value > limits[name]}
        out: dict[str, Any] = {"status": "infeasible" if violations else "ok",
                               "metrics": metrics, "violations": violations,
                               "message": "", "epochs_done": 0, "hash": h,
                               "provenance": {"surrogate": True}, "history": [],
                               "protocol": {}}
        if violations:
            check = INFEASIBLE_SHARE * self.trial_seconds
            out.update(wall_s=check, check_s=check)
            return [self._final(out, check)]
        wall = self.trial_seconds * self._factor(spec)
        check = CHECK_SHARE * wall
        per_epoch = (wall - check) / self.epochs
        final_acc = min(0.99, 0.55 + 0.4 * _unit(h, "accuracy") + 0.02 * math.log(ratio))
        reports = []
        for epoch in range(1, self.epochs + 1):
            acc = final_acc * (1.0 - 0.3 * (self.epochs - epoch) / self.epochs)
            entry = {"epoch": epoch, self.primary: acc, "accuracy": acc,
                     "train_loss": 2.0 * (1.0 - acc), "epoch_s": per_epoch,
                     "trial_wall_s": check + epoch * per_epoch}
            reports.append(entry)
            out["history"].append({"epoch": epoch, "accuracy": acc})
        out["metrics"]["accuracy"] = final_acc
        out.update(epochs_done=self.epochs, wall_s=wall, check_s=check)
        return [*reports, self._final(out, wall)]

    def _final(self, out: dict[str, Any], wall: float) -> dict[str, Any]:
        value = out["metrics"].get(self.primary, math.nan)
        return {"final": True, "outcome": json.dumps(out), "epoch": out["epochs_done"],
                "trial_wall_s": wall, self.primary: value}


def _block_macs(b: Any) -> int:
    import torch

    from convattn import create_block

    try:
        with torch.device("meta"):
            block = create_block(b.type, b.in_ch, b.out_ch, b.stride, **b.given,
                                 input_size=b.in_size)
    except (NotImplementedError, RuntimeError):  # a block that needs real values
        block = create_block(b.type, b.in_ch, b.out_ch, b.stride, **b.given,
                             input_size=b.in_size)
    return int(block.cost(*b.in_size).macs)


def ray_plans_actor(study_dict: dict[str, Any], trial_seconds: float):
    """One Ray actor (named ``driver-scale-plans``) that holds the surrogate and hands
    each Ray trial its report plan: the sleeping workers stay free of torch."""
    import ray

    @ray.remote(num_cpus=0)
    class Plans:
        def __init__(self, study_dict: dict[str, Any], trial_seconds: float):
            from nas.study import load_study

            self.surrogate = Surrogate(load_study(study_dict), trial_seconds)
            self.walls: dict[int, float] = {}

        def plan(self, config: dict[str, Any]) -> list[dict[str, Any]]:
            return self.surrogate.plan(config)

        def record(self, number: int, wall: float) -> None:
            self.walls[number] = max(wall, self.walls.get(number, 0.0))

        def reported_walls(self) -> dict[int, float]:
            return dict(self.walls)

    return Plans.options(name="driver-scale-plans").remote(study_dict, trial_seconds)


def ray_trial(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: sleep through the surrogate's plan, reporting each
    epoch and the final outcome like the real trainable (``trial_wall_s`` measured here,
    and recorded with the plans actor before it is reported)."""
    import time

    import ray
    from ray import tune

    t0 = time.perf_counter()
    plans = ray.get_actor("driver-scale-plans")
    for report in ray.get(plans.plan.remote(config)):
        delay = t0 + float(report["trial_wall_s"]) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        wall = time.perf_counter() - t0
        # what the worker reported, kept apart from the driver: the ledger must add up to it
        ray.get(plans.record.remote(int(config["number"]), wall))
        tune.report({**report, "trial_wall_s": wall})
