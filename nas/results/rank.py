"""Re-evaluate the best found architectures and the study's baselines under one protocol.

``rank_run(results, seeds=N, top=K)`` takes the K best found architectures (feasible
trials ordered by Pareto rank over the study's objectives, then by the primary objective)
and every baseline of the study (its input and classes adapted to the study's data, as
``nas search --with-baselines`` does), and evaluates each with
:func:`nas.trial.evaluate_candidate` for seeds 0..N-1: the same checks, the same proxy
training, the same latency protocol as the search. It runs IN-PROCESS, one evaluation
after another (no Ray): the results are small, a ranking is short, and one process on
one device measures every latency alike; the dataset is loaded once.

Per architecture it reports mean and standard deviation (sample std, 0 for one seed) of
each objective over the seeds whose evaluation finished ("ok"), its Pareto rank among
all the rows (1 = non-dominated, by the means), and for a found architecture the
baselines it DOMINATES: better on every objective by more than the seed spread, i.e.
``|mean_a - mean_b| > std_a + std_b`` in the better direction for each objective. A
difference inside the spread is not a win. The result is saved as RUN_DIR/rank.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import UserError
from .hypervolume import direction_sign, pareto_ranks, to_minimization
from .records import RunResults, TrialRecord

RANK_JSON = "rank.json"
DOMINANCE_RULE = ("A dominates B when A is better on every objective by more than the "
                  "seed spread (|mean_A - mean_B| > std_A + std_B)")


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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "trial": self.trial, "hash": self.hash,
                "status": self.status, "seeds_ok": self.seeds_ok, "metrics": self.metrics,
                "pareto_rank": self.pareto_rank, "dominates": self.dominates,
                "message": self.message, "runs": self.runs}


def top_found(results: RunResults, k: int) -> list[TrialRecord]:
    """The K best feasible found trials: by Pareto rank, then the primary objective."""
    metrics = [o.metric for o in results.study.objectives]
    directions = [o.direction for o in results.study.objectives]
    found = [t for t in results.found() if all(t.value(m) is not None for m in metrics)]
    mins = [to_minimization([t.value(m) for m in metrics], directions) for t in found]
    ranks = pareto_ranks(mins)
    order = sorted(range(len(found)), key=lambda i: (ranks[i], mins[i][0], found[i].number))
    return [found[i] for i in order[:k]]


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
                from .fulltrain import adapt_spec

                cand.spec = adapt_spec(ref, study)
            cand.hash = cand.spec.hash()
        except Exception as err:  # noqa: BLE001 - shown in its row, not fatal
            cand.problem = f"cannot run on the study's data: {err}"
        out.append(cand)
    return out


def rank_run(results: RunResults, *, seeds: int = 3, top: int = 3, device: str = "auto",
             data_dir: str | None = None, stream: TextIO | None = None) -> dict[str, Any]:
    """Evaluate, summarise and save RUN_DIR/rank.json; returns its content."""
    from ..data import cached_data
    from ..trial import evaluate_candidate

    if seeds < 1:
        raise UserError(f"--seeds {seeds}: a positive int is required")
    if top < 1:
        raise UserError(f"--top {top}: a positive int is required")
    stream = sys.stderr if stream is None else stream
    study = results.study
    cands = candidates(results, top)
    if not any(c.kind == "found" for c in cands):
        raise UserError(f"{results.run.path}: no feasible fully trained trial to rank yet")
    bundle = cached_data(study.data, data_dir)
    study.check_data(bundle)
    metrics = [o.metric for o in study.objectives]
    rows: list[Row] = []
    protocol: dict[str, Any] = {}
    total, done = sum(seeds for c in cands if c.spec is not None), 0
    for c in cands:
        if c.spec is None:
            rows.append(Row(c.name, c.kind, c.trial, c.hash, "invalid", 0, {},
                            message=c.problem))
            continue
        runs = []
        for seed in range(seeds):
            t0 = time.perf_counter()
            out = evaluate_candidate(c.spec, study, seed=seed, device=device, data=bundle)
            done += 1
            runs.append({"seed": seed, "status": out.status,
                         "metrics": {m: out.metrics.get(m) for m in
                                     [*metrics, "train_loss", "val_loss"]},
                         "message": out.message})
            protocol = protocol or {**out.provenance, "epochs": study.training.epochs,
                                    "latency": out.protocol}
            acc = out.metrics.get(study.primary.metric)
            print(f"[{done}/{total}] {c.name} seed {seed}: {out.status}"
                  + (f" {study.primary.metric} {acc:.4g}" if acc is not None else "")
                  + f" ({time.perf_counter() - t0:.1f} s)", file=stream, flush=True)
        rows.append(_summarise(c, runs, metrics))
    _rank_rows(rows, metrics, [o.direction for o in study.objectives])
    report = {
        "study": study.name, "run_dir": str(results.run.path), "seeds": list(range(seeds)),
        "top": top, "objectives": [{"metric": o.metric, "direction": o.direction}
                                   for o in study.objectives],
        "protocol": protocol, "dominance_rule": DOMINANCE_RULE,
        "executed": "in-process, sequentially (nas.trial.evaluate_candidate; no Ray)",
        "rows": [r.to_dict() for r in rows],
    }
    path = results.run.path / RANK_JSON
    tmp = path.with_name(f".{RANK_JSON}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    return report


def _summarise(c: Candidate, runs: list[dict[str, Any]], metrics: list[str]) -> Row:
    ok = [r for r in runs if r["status"] == "ok"]
    stats: dict[str, dict[str, float]] = {}
    for m in metrics:
        vals = [float(r["metrics"][m]) for r in ok if r["metrics"].get(m) is not None]
        if vals:
            stats[m] = {"mean": statistics.fmean(vals),
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                        "n": len(vals)}
    bad = [r["status"] for r in runs if r["status"] != "ok"]
    status = "ok" if not bad else f"{bad[0]} ({len(bad)}/{len(runs)} seeds)"
    message = next((r["message"] for r in runs if r["message"]), "")
    return Row(c.name, c.kind, c.trial, c.hash, status, len(ok), stats, runs=runs,
               message=message)


def spread_dominates(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]],
                     metrics: list[str], directions: list[str]) -> bool:
    """``a`` beats ``b`` on every objective by more than the sum of their stds."""
    for m, d in zip(metrics, directions, strict=True):
        if m not in a or m not in b:
            return False
        gain = -direction_sign(d) * (a[m]["mean"] - b[m]["mean"])  # > 0: a is better
        if not gain > a[m]["std"] + b[m]["std"]:
            return False
    return True


def _rank_rows(rows: list[Row], metrics: list[str], directions: list[str]) -> None:
    complete = [r for r in rows if r.seeds_ok and all(m in r.metrics for m in metrics)]
    ranks = pareto_ranks([to_minimization([r.metrics[m]["mean"] for m in metrics],
                                          directions) for r in complete])
    for r, k in zip(complete, ranks, strict=True):
        r.pareto_rank = k
    baselines = [r for r in complete if r.kind == "baseline"]
    for r in complete:
        if r.kind == "found":
            r.dominates = [b.name for b in baselines
                           if spread_dominates(r.metrics, b.metrics, metrics, directions)]


def load_rank(results: RunResults) -> dict[str, Any] | None:
    """RUN_DIR/rank.json if ``nas rank`` was run."""
    path = results.run.path / RANK_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
