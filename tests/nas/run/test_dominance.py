"""The one Pareto rule (nas.run.dominance): the live front the searcher keeps, the batch
front of a run, and `nas status` / `nas pareto` agreeing on a real SQLite run directory
with ties, a dominating baseline, a baseline only `nas rank` measured, infeasible,
duplicate, stopped and unmeasured trials."""

from __future__ import annotations

import json
import math
import random

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.results.export import pick_trial
from nas.results.rank import top_found
from nas.results.records import open_run
from nas.run.dominance import RANK_JSON, Front, dominates, non_dominated, to_minimization
from nas.run.rundir import RunDir
from nas.run.storage import open_storage

DIRS = ["maximize", "minimize"]  # accuracy, params
LIMIT = 6000
STUDY = {
    "version": 1, "name": "dominance-test",
    "data": {"dataset": "synthetic", "synthetic": {
        "channels": 1, "size": [8, 8], "classes": 4, "train": 64, "val": 32}},
    "training": {"epochs": 1, "batch_size": 32},
    "objectives": [{"metric": "accuracy", "direction": "maximize"},
                   {"metric": "params", "direction": "minimize"}],
    "constraints": {"params": LIMIT},
    "space": {"input": {"channels": 1, "size": [8, 8]}, "classes": 4,
              "stem": {"kind": "conv", "channels": [4, 8], "kernel": 3, "stride": 1},
              "stages": [{"channels": [8, 16], "depth": [1, 2], "stride": 2,
                          "blocks": ["basic"]}]},
    "sampler": {"name": "random", "seed": 0},
    "fidelity": {"scheduler": "none"},
    "budget": "20trials",
}


# --------------------------------------------------------------------------- the rule
def test_dominance_needs_a_strict_improvement_in_min_space():
    a, b = to_minimization((0.9, 5.0), DIRS), to_minimization((0.8, 6.0), DIRS)
    assert dominates(a, b) and not dominates(b, a)
    assert not dominates(a, a)  # equal values dominate neither way
    assert not dominates(to_minimization((0.9, 7.0), DIRS), b)


def test_front_keeps_only_non_dominated_points():
    f = Front(DIRS)
    assert f.add(1, (0.8, 6.0))
    assert f.add(2, (0.9, 7.0))  # better accuracy, worse params: both stay
    assert not f.add(3, (0.7, 8.0))  # dominated by both
    assert f.add(4, (0.95, 5.0))  # dominates 1 and 2
    assert set(f.points) == {4} and f.best() == (4, (0.95, 5.0)) and len(f) == 1


def test_front_ties_baselines_and_placeholders():
    f = Front(DIRS)
    assert f.add(7, (0.9, 100.0))
    assert f.add(3, (0.9, 100.0))  # equal values: both on the front
    assert f.best() == (3, (0.9, 100.0))  # a tie goes to the lower trial number
    assert not f.add(9, (0.99, math.inf))  # an unmeasured (placeholder) value never enters
    assert f.add(5, (0.9, 100.0), baseline=True)  # a baseline tied with them: all stay
    assert len(f) == 2 and set(f.points) == {3, 5, 7}
    assert f.add(6, (0.9, 90.0), baseline=True)  # a baseline beats both found trials
    assert len(f) == 0 and f.best() is None and set(f.points) == {6}
    assert f.add(8, (0.95, 95.0))  # a found trial the baseline does not dominate
    assert f.found() == [8] and f.best() == (8, (0.95, 95.0))


points = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.booleans()),
                  min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(points, st.randoms(use_true_random=False))
def test_live_front_is_the_batch_front_in_any_order(pts, rnd):
    """Adding points one by one, in any order, gives the non-dominated set of all of them
    (ties kept), and the best is the best primary value, ties to the lowest number."""
    mins = [to_minimization((a, p), DIRS) for a, p, _ in pts]
    expected = set(non_dominated(mins))
    order = list(range(len(pts)))
    rnd.shuffle(order)
    f = Front(DIRS)
    for i in order:
        f.add(i, pts[i][:2], baseline=pts[i][2])
    assert set(f.points) == expected
    found = [i for i in expected if not pts[i][2]]
    assert len(f) == len(found)
    if found:
        top = max(pts[i][0] for i in found)
        assert f.best()[0] == min(i for i in found if pts[i][0] == top)
    else:
        assert f.best() is None


# --------------------------------------------------------------------------- a run
def _trial(values, *, params_over=0.0, state=optuna.trial.TrialState.COMPLETE, **attrs):
    attrs = {"kind": "search", "status": "ok", **attrs}
    kw = {}
    if values is not None:
        kw["values"] = list(values)
        attrs.setdefault("metrics", {"accuracy": values[0], "params": values[1]})
    if state == optuna.trial.TrialState.COMPLETE:
        kw["constraints"] = {"params": params_over, "oom": 0.0}  # relative amount over
    return optuna.trial.create_trial(state=state, user_attrs=attrs, **kw)


#: (number: accuracy, params, what it is)
TRIALS = [
    _trial((0.80, 3000.0)),  # 0: on the front (tied with 1)
    _trial((0.80, 3000.0)),  # 1: the same values: on the front too
    _trial((0.90, 5000.0)),  # 2: the baseline (and trial 11) dominate it
    _trial((0.95, 5600.0)),  # 3: as accurate as the best, bigger: trial 4 dominates it
    _trial((0.95, 5500.0)),  # 4: best (tied with 13, lower number)
    _trial((0.99, 7000.0), params_over=1 / 6, status="infeasible"),  # 5: over the limit
    _trial((0.95, 5500.0), duplicate_of=4, status="duplicate"),  # 6: counted at 4
    _trial(None, state=optuna.trial.TrialState.PRUNED, status="stopped"),  # 7
    _trial((0.999, math.inf), placeholders=["params"]),  # 8: params never measured
    _trial(None, state=optuna.trial.TrialState.FAIL, kind="baseline", baseline="zoo:hand",
           status="interrupted"),  # 9: an interrupted attempt does not count
    _trial((0.90, 4000.0), kind="baseline", baseline="zoo:hand"),  # 10: beats trial 2
    _trial((0.90, 4000.0)),  # 11: tied with the baseline: on the front
    _trial((1.0, 9000.0), params_over=0.5, kind="baseline", baseline="zoo:big",
           status="infeasible"),  # 12: breaks the limit: dominates nothing
    _trial((0.95, 5500.0)),  # 13: tied with the best
]


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as `nas search` leaves it, its trials told to a real SQLite study."""
    path = tmp_path / "run"
    run = RunDir.create(path, STUDY, optuna_study=STUDY["name"], storage=None, seed=0,
                        budget=STUDY["budget"])
    study = optuna.create_study(study_name=STUDY["name"], directions=DIRS,
                                storage=open_storage(run.storage_url()))
    for t in TRIALS:
        study.add_trial(t)
    return path


def _json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _rank_baseline(path, name: str, accuracy: float, params: float) -> None:
    """RUN_DIR/rank.json as `nas rank` writes it, one baseline row (2 seeds, both ok)."""
    runs = [{"seed": s, "status": "ok", "metrics": {"accuracy": accuracy, "params": params},
             "message": ""} for s in (0, 1)]
    row = {"name": name, "kind": "baseline", "trial": None, "hash": "x", "status": "ok",
           "seeds_ok": 2, "runs": runs, "pareto_rank": 1, "dominates": [], "message": "",
           "metrics": {"accuracy": {"mean": accuracy}, "params": {"mean": params}}}
    (path / RANK_JSON).write_text(json.dumps(
        {"study": STUDY["name"], "seeds": [0, 1], "rows": [row],
         "objectives": STUDY["objectives"]}))


@pytest.mark.parametrize("ranked", [False, True])
def test_status_and_pareto_agree_on_the_front_and_best(run_dir, capsys, ranked):
    front, beaten = [4, 13, 11, 0, 1], {"2": ["zoo:hand"]}
    if ranked:  # a baseline only `nas rank` measured knocks 0 and 1 off the front
        _rank_baseline(run_dir, "zoo:ranked", 0.85, 2900.0)
        front, beaten = [4, 13, 11], {"0": ["zoo:ranked"], "1": ["zoo:ranked"], **beaten}
    status = _json(capsys, "status", str(run_dir), "--json")
    pareto = _json(capsys, "pareto", str(run_dir), "--json")

    assert status["front"] == [f["trial"] for f in pareto["front"]] == front
    assert status["front_size"] == pareto["counts"]["front"] == len(front)
    assert status["best"]["number"] == 4 == pareto["front"][0]["trial"]
    assert status["best"]["values"] == pareto["front"][0]["values"] == {
        "accuracy": 0.95, "params": 5500.0}
    assert status["dominated_by_baseline"] == beaten == {
        str(b["trial"]): b["baselines"] for b in pareto["dominated_by_baseline"]}
    # the feasible, measured, non-duplicate found trials: not 5, 6, 7, 8 nor baselines
    assert pareto["counts"]["feasible"] == 7
    bases = {b["name"]: b for b in pareto["baselines"]}
    assert bases["zoo:hand"]["on_front"] and bases["zoo:hand"]["trial"] == 10
    assert not bases["zoo:big"]["feasible"] and not bases["zoo:big"]["on_front"]
    assert bases.get("zoo:ranked", {"on_front": True})["on_front"]

    # The searcher's live front, fed the told trials in any order, says the same.
    frozen = optuna.load_study(study_name=STUDY["name"],
                               storage=f"sqlite:///{run_dir / 'optuna.db'}").get_trials()
    for seed in range(5):
        order = list(frozen)
        random.Random(seed).shuffle(order)
        live = Front(DIRS)
        for t in order:
            feasible = t.state.name == "COMPLETE" and max(t.constraints.values()) <= 0
            if feasible and t.user_attrs.get("duplicate_of") is None:
                live.add(t.number, t.values, baseline=t.user_attrs["kind"] == "baseline")
        if not ranked:  # the live front knows only the baselines the search evaluated
            assert live.found() == front and live.best()[0] == status["best"]["number"]


def test_best_primary_pick_and_rank_order_follow_the_rule(run_dir, capsys):
    """`nas export --pick best:accuracy` is the status best (trial 3 is as accurate and has
    the lower number, but trial 4 dominates it); `nas rank` takes the front first."""
    best = _json(capsys, "status", str(run_dir), "--json")["best"]["number"]
    results = open_run(run_dir)
    assert pick_trial(results, "best:accuracy").trial.number == best == 4
    assert [t.number for t in top_found(results, 4)] == [4, 13, 11, 0]
