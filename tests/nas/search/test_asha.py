"""The one ASHA rule (nas.search.asha): Ray's asynchronous successive halving decisions,
baselines never stopped and kept out of the rungs (issue 14: an AA-ResNet baseline was
stopped after one epoch and compared against nothing), never a stop at the last epoch,
and rungs that a resumed search continues from the rung log (rungs.jsonl)."""

from __future__ import annotations

import json
import random

import pytest

from nas.run.rundir import RunDir
from nas.search.asha import AshaRule, rung_epochs


def _run(tmp_path) -> RunDir:
    return RunDir.create(tmp_path / "run", {"name": "x"}, optuna_study="x", storage=None,
                         seed=0, budget="4trials")


def _rule(run=None, epochs=4, grace=1, rf=2, mode="max") -> AshaRule:
    return AshaRule(metric="accuracy", mode=mode, epochs=epochs, grace=grace,
                    reduction_factor=rf, run=run)


def _report(epoch: int, value: float) -> dict:
    return {"epoch": epoch, "accuracy": value}


def test_a_baseline_below_the_cutoff_continues_where_a_found_trial_stops(tmp_path):
    rule = _rule(_run(tmp_path))
    for n, acc in enumerate((0.84, 0.86, 0.88, 0.9)):  # each above the cutoff
        assert not rule.decide({"number": n, "kind": "search"}, _report(1, acc))

    assert rule.decide({"number": 10, "kind": "search"}, _report(1, 0.1))
    assert not rule.decide({"number": 11, "kind": "baseline"}, _report(1, 0.1))

    rungs = rule.to_dict()
    recorded = {n for r in rungs["rungs"] for n in r["trials"]}
    assert "11" not in recorded and "10" in recorded  # the baseline never enters a rung
    assert [s["trial"] for s in rungs["stopped"]] == [10]
    assert rungs["stopped"][0]["cutoff"] == pytest.approx(0.87)  # median of 4 at rf 2


def test_never_stopped_at_the_last_epoch_or_on_a_final_report():
    rule = _rule(epochs=2)
    assert rung_epochs(2, 1, 2) == [1]
    for n in range(4):
        rule.decide({"number": n}, _report(1, 0.9))
    assert rule.decide({"number": 9}, _report(1, 0.1))
    assert not rule.decide({"number": 8}, _report(2, 0.1))  # its last epoch
    assert not rule.decide({"number": 7}, {**_report(1, 0.1), "final": True})


@pytest.mark.parametrize("mode", ["max", "min"])
def test_rungs_survive_a_resume(tmp_path, mode):
    """A resumed search keeps stopping against the cutoffs the last session recorded."""
    run = _run(tmp_path)
    first = _rule(run, mode=mode)
    sign = 1 if mode == "max" else -1
    for n, acc in enumerate((0.84, 0.86, 0.88, 0.9)):  # each above the cutoff
        first.decide({"number": n}, _report(1, sign * acc))
    assert first.decide({"number": 5}, _report(1, sign * 0.1))
    # killed here (no session end: the snapshot may lag): the rung log has every decision
    again = _rule(run, mode=mode)
    assert again.to_dict() == first.to_dict()
    assert again.decide({"number": 20}, _report(1, sign * 0.5))
    assert not again.decide({"number": 21}, _report(1, sign * 0.95))
    again.save()  # what the driver does when a session ends
    assert json.loads((run / "rungs.json").read_text()) == again.to_dict()


def test_a_run_from_before_the_rung_log_resumes_from_its_snapshot(tmp_path):
    run = _run(tmp_path)
    first = _rule(run)
    for n, acc in enumerate((0.84, 0.86, 0.88, 0.9, 0.1)):
        first.decide({"number": n}, _report(1, acc))
    first.save()
    (run / "rungs.jsonl").unlink()  # a run directory written before the log existed

    again = _rule(run)
    assert again.to_dict() == first.to_dict()
    assert len(run.read_rung_log()) == 5  # carried into the log: a later resume has them
    assert _rule(run).to_dict() == first.to_dict()


@pytest.mark.parametrize("epochs,grace,rf", [(4, 1, 2), (9, 1, 3), (8, 2, 2), (15, 3, 3),
                                             (10, 2, 3), (20, 1, 4), (9, 3, 3)])
def test_decides_like_rays_bracket(epochs, grace, rf):
    """The rule is Ray's ASHAScheduler bracket (stop_last_trials=False), decision by
    decision, on a stream that both stops and promotes trials."""
    pytest.importorskip("ray")
    from types import SimpleNamespace

    from ray.tune.schedulers.async_hyperband import _Bracket

    ray_bracket = _Bracket(grace, epochs, rf, 0, stop_last_trials=False)
    ours = _rule(epochs=epochs, grace=grace, rf=rf)
    assert rung_epochs(epochs, grace, rf) == pytest.approx(
        sorted(m for m, _ in ray_bracket._rungs if m < epochs))
    rng = random.Random(epochs * 100 + rf)
    stopped = set()
    for n in range(40):
        trial = SimpleNamespace(trial_id=n)
        quality = rng.random()
        for epoch in range(1, epochs):
            value = quality * epoch / epochs + 0.05 * rng.random()
            a = ray_bracket.on_result(trial, epoch, value) == "STOP"
            b = ours.decide({"number": n}, _report(epoch, value))
            assert a == b, (n, epoch)
            if a:
                stopped.add(n)
                break
    assert 0 < len(stopped) < 40  # the stream exercised both outcomes
