"""Re-evaluate the best found architectures and the study's baselines under one protocol.

``rank_run(results, seeds=N, top=K)`` takes the K best found architectures (feasible
trials ordered by Pareto rank over the study's objectives, found trials and baselines
together as in :mod:`nas.run.dominance`, then by the primary objective)
and every baseline of the study (its input and classes adapted to the study's data, as
``nas search --with-baselines`` does), and evaluates each with
:func:`nas.evaluate.trial.evaluate_candidate` for seeds 0..N-1: the same checks, the same proxy
training, the same latency protocol as the search. It runs IN-PROCESS, one evaluation
after another (no Ray): the results are small, a ranking is short, and one process on
one device measures every latency alike; the dataset is loaded once. The order is
seed-major: every architecture's seed 0, then every seed 1, ...

Per architecture: mean, standard deviation and standard error of each objective over the
seeds whose evaluation finished ("ok"), and its Pareto rank among all rows (1 =
non-dominated, by the means). Per (found, baseline) pair and objective: the difference,
its standard error paired by seed, a t-test and its verdict at alpha 0.05 with Holm's
correction across all the ranking's tests, and for a difference that is not significant
how many seeds would make it so. A found architecture DOMINATES a baseline when it is
better on every objective, by an intersection-union test Holm-corrected across the pairs
(:mod:`nas.results.rankstats`).

Latency under load: each seed's latency is the median of the study's repeats (what the
search records), but rows are compared on the 10th percentile of the repeats
(``latency_p10_ms``): other processes on the machine add delay to some repeats and
never remove any, so a low percentile moves far less under load than the median or the
mean. Torch threads are pinned to the study's ``cpus_per_trial``. The load average
(``os.getloadavg``) before and after each evaluation is recorded, and a measurement whose
spread ``(p90 - p10) / median`` exceeds NOISY_SPREAD is flagged as too noisy to rank by.
The result is saved as RUN_DIR/rank.json. Each finished evaluation is also appended to
RUN_DIR/rank_evals.jsonl (:mod:`nas.results.rank_log`) and re-used by the next ranking
under the same protocol: Ctrl-C loses at most the evaluation in progress, and more seeds
or a larger ``top`` evaluate only what is new.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import UserError
from ..run.dominance import RANK_JSON, pareto_ranks, to_minimization
from ..study.sections import JUDGED_ON
from .rank_log import RankLog, protocol_key
from .rankstats import (
    ALPHA,
    DOMINANCE_TEST,
    POWER,
    TEST_NAME,
    compare,
    describe,
    judge,
    judge_dominance,
)
from .records import RunResults, TrialRecord


def dominance_rule(alpha: float) -> str:
    return f"A dominates B when A is better on every objective: {DOMINANCE_TEST}, alpha {alpha:g}"


#: evaluations saved for the next `nas rank` (an error or an out-of-memory may be the
#: machine's, not the architecture's: those are evaluated again)
KEPT_STATUSES = ("ok", "infeasible", "diverged")
#: (p90 - p10) / median of a latency measurement above which it is too noisy to rank by.
NOISY_SPREAD = 0.5


@dataclass
class Candidate:
    name: str
    kind: str  # found | baseline
    spec: Any  # ModelSpec, or None when it cannot run on the study's data
    trial: int | None = None
    hash: str | None = None
    problem: str = ""


@dataclass
class Row:
    name: str
    kind: str
    trial: int | None
    hash: str | None
    status: str
    seeds_ok: int
    metrics: dict[str, dict[str, float]]
    runs: list[dict[str, Any]] = field(default_factory=list)
    pareto_rank: int | None = None
    dominates: list[str] = field(default_factory=list)
    message: str = ""
    #: the study's limits it breaks ({name: amount over}); a baseline is trained anyway
    #: (a comparison), compared with, and left out of the Pareto ranks like the front.
    over_limits: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "trial": self.trial, "hash": self.hash,
                "status": self.status, "seeds_ok": self.seeds_ok, "metrics": self.metrics,
                "pareto_rank": self.pareto_rank, "dominates": self.dominates,
                "message": self.message, "over_limits": self.over_limits,
                "runs": self.runs}


def top_found(results: RunResults, k: int) -> list[TrialRecord]:
    """The K best feasible found trials: by Pareto rank over found trials and baselines
    together (:mod:`nas.run.dominance`; rank 1 is the front ``nas pareto`` shows), then
    the primary objective, then the trial number."""
    return [results.trial(n) for n in results.front().ranked()[:k]]


def candidates(results: RunResults, top: int) -> list[Candidate]:
    """Found architectures then baselines, each with a spec ready for the study's data."""
    from search_space import ModelSpec

    out = [Candidate(f"trial {t.number}", "found", ModelSpec.from_dict(t.spec),
                     trial=t.number, hash=t.hash) for t in top_found(results, top)]
    evaluated = {b.name: b for b in results.baselines()}
    study = results.study
    for ref in study.baselines:
        b = evaluated.get(ref)
        cand = Candidate(ref, "baseline", None, trial=b.number if b else None)
        try:
            if b is not None and b.spec:
                cand.spec = ModelSpec.from_dict(b.spec)
            else:
                from ..study.study import adapt_spec

                cand.spec = adapt_spec(ref, study)
            cand.hash = cand.spec.hash()
        except Exception as err:  # noqa: BLE001 - shown in its row, not fatal
            cand.problem = f"cannot run on the study's data: {err}"
        out.append(cand)
    return out


def rank_run(results: RunResults, *, seeds: int = 3, top: int = 3, device: str = "auto",
             data_dir: str | None = None, stream: TextIO | None = None,
             alpha: float = ALPHA) -> dict[str, Any]:
    """Evaluate, summarise and save RUN_DIR/rank.json; returns its content. ``alpha``: the
    family-wise error rate of the tests (the evaluations do not depend on it: a ranking
    judged again at another alpha reuses every saved one)."""
    from ..evaluate.data import cached_data

    if seeds < 1:
        raise UserError(f"--seeds {seeds}: a positive int is required")
    if top < 1:
        raise UserError(f"--top {top}: a positive int is required")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha:g}: a significance level between 0 and 1 is required")
    stream = sys.stderr if stream is None else stream
    study = results.study
    cands = candidates(results, top)
    if not any(c.kind == "found" for c in cands):
        raise UserError(f"{results.run.path}: no feasible fully trained trial to rank yet")
    bundle = cached_data(study.data, data_dir)
    study.check_data(bundle)
    metrics = [o.metric for o in study.objectives]
    # the latency measurement's spread is kept whatever the objectives are
    kept = sorted({*metrics, "latency_ms", "latency_p10_ms", "latency_p90_ms",
                   "train_loss", "val_loss"})
    protocol: dict[str, Any] = {}
    load_start = list(os.getloadavg())
    log = open_rank_log(results.run.path, study, device)
    runnable = [c for c in cands if c.spec is not None]
    total, done = seeds * len(runnable), 0
    reused = 0
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in runnable}
    # Seed-major: every architecture's seed 0, then every seed 1, ... The machine's speed
    # drifts (on a 2-core VM the ResNet of digit-scenes measured 1.1 to 1.8 ms within an
    # hour): measured architecture after architecture, the drift between two of them is
    # the same in every seed, a bias the paired differences cannot show; measured seed
    # after seed, it varies between the seeds and shows in their spread. An interrupted
    # ranking also has every architecture's first seeds.
    for seed in range(seeds):
        for c in runnable:
            comparison, spec_hash = c.kind == "baseline", c.spec.hash()
            t0 = time.perf_counter()
            saved = log.get(spec_hash, seed, comparison)
            if saved is None:
                run, provenance, latency = _evaluate_seed(c.spec, study, seed, device,
                                                          bundle, kept, comparison)
                if run["status"] in KEPT_STATUSES:
                    log.add(spec_hash, seed, comparison, run, provenance, latency)
            else:
                run, provenance, latency = saved["run"], saved["provenance"], saved["latency"]
                reused += 1
            done += 1
            runs[c.name].append(run)
            protocol = protocol or {**provenance, "epochs": study.training.epochs,
                                    "latency": latency}
            acc = run["metrics"].get(study.primary.metric)
            took = (f"saved in {log.path.name}" if saved is not None
                    else f"{time.perf_counter() - t0:.1f} s")
            print(f"[{done}/{total}] {c.name} seed {seed}: {run['status']}"
                  + (f" {study.primary.metric} {acc:.4g}" if acc is not None else "")
                  + (" (latency too noisy to rank by)" if run["latency_noisy"] else "")
                  + f" ({took})", file=stream, flush=True)
    rows = [_summarise(c, runs[c.name], kept) if c.spec is not None
            else Row(c.name, c.kind, c.trial, c.hash, "invalid", 0, {}, message=c.problem)
            for c in cands]
    directions = [o.direction for o in study.objectives]
    _rank_rows(rows, metrics, directions)
    comparisons = compare_rows(rows, metrics, directions, alpha)
    pairs = dominance(rows, comparisons, len(metrics), alpha)
    report = {
        "study": study.name, "run_dir": str(results.run.path), "seeds": list(range(seeds)),
        "top": top, "objectives": [{"metric": o.metric, "direction": o.direction}
                                   for o in study.objectives],
        "protocol": {**protocol, "threads_pinned": protocol.get("threads"),
                     "compared_on": {m: JUDGED_ON.get(m, m) for m in metrics},
                     "noisy_spread": NOISY_SPREAD},
        "load_average_1_5_15": {"start": load_start, "end": list(os.getloadavg())},
        "cpu_count": os.cpu_count(),
        "test": {"name": TEST_NAME, "alpha": alpha, "power_for_seeds": POWER},
        "dominance_rule": dominance_rule(alpha),
        "executed": "in-process, sequentially (nas.evaluate.trial.evaluate_candidate; no Ray)",
        "evaluations": {"total": total, "reused": reused, "log": str(log.path)},
        "rows": [r.to_dict() for r in rows],
        "comparisons": comparisons,
        "dominance": {"test": DOMINANCE_TEST, "alpha": alpha, "pairs": pairs},
        "seeds_guidance": seeds_guidance(comparisons, seeds, alpha),
    }
    path = results.run.path / RANK_JSON
    tmp = path.with_name(f".{RANK_JSON}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    return report


def open_rank_log(run_dir: Any, study: Any, device: str) -> RankLog:
    """The run's log of finished evaluations, for this study's protocol on ``device``."""
    import torch

    from ..evaluate.train import resolve_device

    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return RankLog(run_dir, protocol_key(study, str(dev), name, torch.__version__))


def _evaluate_seed(spec: Any, study: Any, seed: int, device: str, bundle: Any,
                   kept: list[str], comparison: bool
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One seed of one architecture: its run entry, provenance and latency protocol."""
    from ..evaluate.trial import evaluate_candidate

    load = os.getloadavg()[0]
    out = evaluate_candidate(spec, study, seed=seed, device=device, data=bundle,
                             comparison=comparison)
    run = {"seed": seed, "status": out.status,
           "metrics": {m: out.metrics.get(m) for m in kept},
           "load_1min": [load, os.getloadavg()[0]], "message": out.message,
           "violations": dict(out.violations)}
    run["latency_spread"] = latency_spread(run["metrics"])
    run["latency_noisy"] = (run["latency_spread"] is not None
                            and run["latency_spread"] > NOISY_SPREAD)
    return run, dict(out.provenance), dict(out.protocol)


def latency_spread(metrics: dict[str, Any]) -> float | None:
    """(p90 - p10) / median of one latency measurement (None if not measured)."""
    med, p10, p90 = (metrics.get(k) for k in ("latency_ms", "latency_p10_ms",
                                              "latency_p90_ms"))
    if med is None or p10 is None or p90 is None or not med > 0:
        return None
    return (p90 - p10) / med


def _summarise(c: Candidate, runs: list[dict[str, Any]], metrics: list[str]) -> Row:
    ok = [r for r in runs if r["status"] == "ok"]
    stats: dict[str, dict[str, float]] = {}
    for m in metrics:
        vals = [float(r["metrics"][m]) for r in ok if r["metrics"].get(m) is not None]
        if vals:
            stats[m] = describe(vals)
    bad = [r["status"] for r in runs if r["status"] != "ok"]
    status = "ok" if not bad else f"{bad[0]} ({len(bad)}/{len(runs)} seeds)"
    over = next((r["violations"] for r in ok if r.get("violations")), {})
    if over and not bad:
        status = "infeasible: over the study's limits, trained as a comparison"
    noisy = sum(1 for r in ok if r.get("latency_noisy"))
    if noisy:
        status += f"; latency too noisy to rank by in {noisy}/{len(ok)} seeds"
    message = next((r["message"] for r in runs if r["message"]), "")
    return Row(c.name, c.kind, c.trial, c.hash, status, len(ok), stats, runs=runs,
               message=message, over_limits=dict(over))


def per_seed(row: Row, metric: str) -> dict[int, float]:
    """seed -> the value an objective is compared on, over the row's finished seeds."""
    key = JUDGED_ON.get(metric, metric)
    return {r["seed"]: float(r["metrics"][key]) for r in row.runs
            if r["status"] == "ok" and r["metrics"].get(key) is not None}


def compare_rows(rows: list[Row], metrics: list[str], directions: list[str],
                 alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every (found, baseline) pair on every objective, tested and Holm-corrected."""
    tests = []
    found = [r for r in rows if r.kind == "found" and r.seeds_ok]
    baselines = [r for r in rows if r.kind == "baseline" and r.seeds_ok]
    for f in found:
        for b in baselines:
            for m, d in zip(metrics, directions, strict=True):
                a, z = per_seed(f, m), per_seed(b, m)
                if not a or not z:
                    continue
                tests.append({"found": f.name, "baseline": b.name, "metric": m,
                              "compared_on": JUDGED_ON.get(m, m), "direction": d,
                              **compare(a, z)})
    judge(tests, alpha)
    return tests


def dominance(rows: list[Row], tests: list[dict[str, Any]], n_objectives: int,
              alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Per (found, baseline) pair: does the found dominate, by the intersection-union test
    over its judged ``tests``, Holm-corrected across the pairs; fills each found row's
    ``dominates``."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tests:
        key = (t["found"], t["baseline"])
        pairs.setdefault(key, {"found": key[0], "baseline": key[1], "tests": []})
        pairs[key]["tests"].append(t)
    out = list(pairs.values())
    judge_dominance(out, n_objectives, alpha)
    for f in rows:
        if f.kind == "found":
            f.dominates = [p["baseline"] for p in out if p["found"] == f.name and p["dominates"]]
    return [{k: v for k, v in p.items() if k != "tests"} for p in out]


#: seeds beyond which more seeds are no practical way to separate a pair
PRACTICAL_SEEDS = 1000


def seeds_guidance(tests: list[dict[str, Any]], seeds: int,
                   alpha: float = ALPHA) -> dict[str, Any]:
    """What more seeds would buy: the open difference (not significant yet) that the
    fewest more seeds would give the power to separate, and how many open differences no
    practical number of seeds would."""
    open_ = [t for t in tests if not t["significant"]]
    if not open_:
        return {"text": f"every difference is significant with {seeds} seed(s)"}
    needed = [(t.get("seeds_needed") or math.inf, t) for t in open_]
    beyond = sum(1 for n, _ in needed if n > PRACTICAL_SEEDS)
    # a difference the test already had the power for (n <= seeds) but did not reject
    # is probably smaller than measured: more seeds are no plan for it
    ahead = sorted(((n, t) for n, t in needed if seeds < n <= PRACTICAL_SEEDS),
                   key=lambda nt: nt[0])
    beyond_text = (f"{beyond} open difference(s) would need more than {PRACTICAL_SEEDS} "
                   "seeds or are exactly zero: no practical number of seeds separates them")
    if not ahead:
        return {"seeds": None, "beyond_practical": beyond,
                "text": beyond_text if beyond else
                f"no open difference would gain the power from more seeds (now {seeds})"}
    n, nxt = ahead[0]
    text = (f"the next difference to separate is {nxt['found']} vs {nxt['baseline']} on "
            f"{nxt['metric']} (difference {nxt['diff']:.3g}, spread {nxt['sd']:.3g}): "
            f"about {n} seeds for the {nxt['test']} test to reject at alpha {alpha:g} with "
            f"{POWER:.0%} power, if the difference and spread hold (now {seeds}; `nas rank "
            f"--seeds {n}`)" + (f"; {beyond_text}" if beyond else ""))
    return {"next": {k: nxt[k] for k in ("found", "baseline", "metric")}, "seeds": n,
            "beyond_practical": beyond, "text": text}


def _rank_rows(rows: list[Row], metrics: list[str], directions: list[str]) -> None:
    keys = [JUDGED_ON.get(m, m) for m in metrics]
    complete = [r for r in rows if r.seeds_ok and not r.over_limits
                and all(k in r.metrics for k in keys)]
    ranks = pareto_ranks([to_minimization([r.metrics[k]["mean"] for k in keys],
                                          directions) for r in complete])
    for r, k in zip(complete, ranks, strict=True):
        r.pareto_rank = k
