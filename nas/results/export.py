"""Export a found architecture as a model spec (the zoo's versioned YAML format) whose
``meta.provenance`` says where it came from and how its numbers were measured.

Picks (``--pick``), among the feasible full-fidelity trials that also meet the optional
extra limits (``--max-latency-ms`` etc.):

- ``best:OBJECTIVE``: the best value of that metric among the trials measured on every
  objective (ties: a trial on the front first, then the lower trial number; ``best:`` of
  the primary objective is ``nas status``'s best);
- ``knee``: the knee of the front over the study's objectives (:mod:`nas.results.knee`:
  farthest from the hyperplane through the front's extremes, in normalised objective
  space);
- ``trial:N``: that trial (refused unless it is feasible and meets the limits; a
  duplicate is exported with the measurements of the trial it duplicates).

``best:`` and ``knee`` never pick a trial that a baseline dominates (the front's one
dominance rule, :mod:`nas.run.dominance`); the reason says how many were skipped.
``trial:N`` exports such a trial when asked, and its reason says which baseline beats it.

The exported spec is the trial's spec unchanged except ``name`` and ``meta``, so it has
the same canonical hash, parameter count and state-dict keys as the trial's model.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..run.dominance import direction_sign
from ..run.outputs import append_side, write_output, write_side
from ..run.rundir import read_jsonl
from ..study import CONSTRAINT_METRICS, METRICS
from .front import pareto
from .plot import short_name
from .records import RunResults, TrialRecord

#: the run directory's record of exports (one JSON a line), read by ``nas report``.
EXPORTS_LOG = "exports.jsonl"
_PICK_RE = re.compile(r"^(best:(?P<metric>[a-z_]+)|knee|trial:(?P<trial>-?\d+))$")


@dataclass
class Picked:
    trial: TrialRecord  # the trial whose spec is exported
    measured: TrialRecord  # the trial whose measurements it carries (differs for a duplicate)
    pick: str
    reason: str


def parse_pick(text: str) -> tuple[str, str | int | None]:
    """("best", metric) | ("knee", None) | ("trial", N); UserError otherwise."""
    m = _PICK_RE.match(text.strip())
    if not m:
        raise UserError(f"--pick {text!r}: allowed: best:OBJECTIVE (one of "
                        f"{', '.join(METRICS)}), knee, trial:N")
    if m.group("metric") is not None:
        if m.group("metric") not in METRICS:
            raise UserError(f"--pick {text!r}: unknown objective {m.group('metric')!r}; "
                            f"allowed: {', '.join(METRICS)}")
        return "best", m.group("metric")
    if m.group("trial") is not None:
        return "trial", int(m.group("trial"))
    return "knee", None


def check_limits(limits: dict[str, float | None]) -> dict[str, float]:
    out = {}
    for metric, value in limits.items():
        if value is None:
            continue
        if metric not in CONSTRAINT_METRICS:
            raise UserError(f"limit on {metric!r}: allowed: {', '.join(CONSTRAINT_METRICS)}")
        if not value > 0:
            raise UserError(f"--max-{metric.replace('_', '-')} {value:g}: a positive number "
                            "is required")
        out[metric] = float(value)
    return out


def meets(t: TrialRecord, limits: dict[str, float]) -> bool:
    return all((v := t.value(m)) is not None and v <= lim for m, lim in limits.items())


def pick_trial(results: RunResults, pick: str,
               limits: dict[str, float] | None = None) -> Picked:
    """The trial ``pick`` selects (UserError if none qualifies)."""
    limits = check_limits(limits or {})
    kind, arg = parse_pick(pick)
    where = (" with " + ", ".join(f"{m} <= {v:g}" for m, v in limits.items())) if limits else ""
    if kind == "trial":
        t = results.trial(int(arg))
        measured = t
        if t.user_attrs.get("duplicate_of") is not None:
            measured = results.trial(int(t.user_attrs["duplicate_of"]))
        if not t.spec:
            raise UserError(f"--pick trial:{arg}: trial {arg} has no spec ({t.status})")
        if not (measured.constraints_met and measured.status == "ok"):
            raise UserError(f"--pick trial:{arg}: trial {arg} is {measured.status}, not a "
                            "feasible fully trained candidate; `nas pareto` lists those")
        if not meets(measured, limits):
            got = ", ".join(f"{m} {measured.value(m)}" for m in limits)
            raise UserError(f"--pick trial:{arg}: trial {arg} does not meet{where} ({got})")
        beaten = pareto(results).dominated_by_baseline.get(measured.number)
        note = (f"; dominated by baseline {', '.join(map(short_name, beaten))}"
                if beaten else "")
        return Picked(t, measured, pick, f"trial {arg} as asked{note}")
    # One dominance rule (nas.run.dominance): a trial a baseline dominates is never picked.
    beaten = pareto(results).dominated_by_baseline
    feasible = [t for t in results.found() if meets(t, limits)]
    candidates = [t for t in feasible if t.number not in beaten]
    skipped = len(feasible) - len(candidates)
    if not candidates:
        n = len(results.found())
        why = (f"; all {skipped} are dominated by a baseline ("
               + ", ".join(sorted({short_name(b) for t in feasible for b in beaten[t.number]}))
               + "): nothing the search found beats it; `--pick trial:N` exports one anyway"
               if skipped else "")
        raise UserError(f"--pick {pick}: no feasible trial{where or ''} "
                        f"({n} feasible trial(s) in the run{why})")
    also = f"; {skipped} trial(s) a baseline dominates skipped" if skipped else ""
    sub = RunResults(results.run, results.study, results.optuna_name,
                     [t for t in results.trials if t.kind == "baseline" or
                      not t.feasible or meets(t, limits)])
    front = pareto(sub)
    if kind == "best":
        metric = str(arg)
        direction = {o.metric: o.direction for o in results.objective_refs([metric])}[metric]
        sign = direction_sign(direction)
        # Those the front is taken over (measured on every objective), as `nas status`.
        over = {t.number for t in front.feasible}
        have = [t for t in candidates if t.number in over and t.value(metric) is not None]
        if not have:
            raise UserError(f"--pick {pick}: no candidate has a measured {metric}")
        # Equal values: a trial on the front first (so best:PRIMARY is the best trial
        # `nas status` names, nas.run.dominance), then the lower trial number.
        on_front = {t.number for t in front.front}
        best = min(have, key=lambda t: (sign * t.value(metric), t.number not in on_front,
                                        t.number))
        return Picked(best, best, pick, f"best {metric} ({direction}) of {len(have)} "
                                        f"feasible trial(s){where}{also}")
    return Picked(front.knee, front.knee, pick,
                  f"knee of the {len(front.front)}-point front over "
                  f"{', '.join(front.metrics)}{where}{also}")


def provenance(results: RunResults, picked: Picked) -> dict[str, Any]:
    """The ``meta.provenance`` section: study, trial, measured metrics and how."""
    m, study = picked.measured, results.study
    prov = m.provenance
    metrics = {k: v for k, v in m.metrics.items() if isinstance(v, (int, float, str))}
    measured = {
        "device": prov.get("device"), "device_name": prov.get("device_name"),
        "torch": prov.get("torch"), "precision": prov.get("precision"),
        "batch_size": prov.get("batch_size"), "seed": prov.get("seed"),
        "threads": prov.get("threads"),
        "epochs": m.user_attrs.get("epochs_done"),
        "accuracy": "validation top-1 after the last proxy-training epoch "
                    f"({study.data.dataset}, val_fraction {study.data.val_fraction})",
    }
    if m.protocol:
        measured["latency"] = {k: m.protocol[k] for k in (
            "mode", "batch", "warmup", "repeats", "statistic", "precision", "device",
            "device_name", "threads", "channels_last") if k in m.protocol}
    return {
        "study": study.name,
        "optuna_study": results.optuna_name,
        "storage": hide_password(results.run.storage_url()),
        "run_dir": str(results.run.path),
        "trial": picked.trial.number,
        **({"measured_in_trial": m.number} if m.number != picked.trial.number else {}),
        "pick": picked.pick,
        "why": picked.reason,
        "hash": picked.trial.hash,
        "objectives": {o.metric: o.direction for o in study.objectives},
        "constraints": dict(study.constraints),
        "metrics": metrics,
        "measured": {k: v for k, v in measured.items() if v is not None},
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def hide_password(url: str) -> str:
    """A storage URL safe to write into a shared file (no database password)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse has no password field
        return url


def export_spec(results: RunResults, picked: Picked):
    """The picked trial's ModelSpec with its name and provenance set."""
    from search_space import ModelSpec

    d = dict(picked.trial.spec)
    meta = dict(d.get("meta") or {})
    meta["provenance"] = provenance(results, picked)
    d["meta"] = meta
    d["name"] = f"{results.study.name}-trial{picked.trial.number}"
    return ModelSpec.from_dict(d)


def export(results: RunResults, pick: str, out: str | os.PathLike,
           limits: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Pick, write the spec to ``out`` (and a copy under RUN_DIR/exports/), log it in
    RUN_DIR/exports/exports.jsonl; returns what was done."""
    picked = pick_trial(results, pick, {k: v for k, v in (limits or {}).items()})
    spec = export_spec(results, picked)
    if spec.hash() != picked.trial.hash:
        raise AssertionError(f"exported spec hash {spec.hash()} != trial {picked.trial.hash}")
    text = spec.to_yaml()
    out = write_output(out, text)
    copy = results.run.exports_dir / f"{spec.name}.yaml"
    kept = write_side(copy, text)
    record = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "pick": pick, "trial": picked.trial.number, "hash": spec.hash(),
              "name": spec.name, "path": str(out.resolve()), "copy": str(copy) if kept else None,
              "limits": {k: v for k, v in (limits or {}).items() if v is not None},
              "why": picked.reason,
              "values": {o.metric: picked.measured.value(o.metric)
                         for o in results.study.objectives}}
    append_side(results.run.exports_dir / EXPORTS_LOG, json.dumps(record))
    return record


def read_exports(results: RunResults) -> list[dict[str, Any]]:
    return read_jsonl(results.run.exports_dir / EXPORTS_LOG)
