"""ASHA never stops a baseline (a comparison trained to the study's full fidelity) and
keeps its values out of the rungs, while it still stops a found trial with the same
values (issue 14: an AA-ResNet baseline was stopped after one epoch and compared against
nothing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from nas.run.rundir import RunDir  # noqa: E402
from nas.search.asha import RecordingASHA  # noqa: E402


class _Searcher:
    def __init__(self):
        self.asha_stopped: set[str] = set()


def _trial(trial_id: str, number: int, kind: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"number": number, "kind": kind})


def _scheduler(tmp_path) -> tuple[RecordingASHA, _Searcher]:
    run = RunDir.create(tmp_path / "run", {"name": "x"}, optuna_study="x", storage=None,
                        seed=0, budget="4trials")
    searcher = _Searcher()
    asha = RecordingASHA(metric="accuracy", mode="max", epochs=4, grace=1,
                         reduction_factor=2, run=run, searcher=searcher)
    return asha, searcher


def test_a_baseline_below_the_cutoff_continues_where_a_found_trial_stops(tmp_path):
    asha, searcher = _scheduler(tmp_path)
    found = [_trial(f"f{i}", i, "search") for i in range(4)]
    weak_found = _trial("weak", 10, "search")
    weak_baseline = _trial("base", 11, "baseline")
    for t in (*found, weak_found, weak_baseline):
        asha.on_trial_add(None, t)
    for t, acc in zip(found, (0.9, 0.88, 0.86, 0.84), strict=True):
        asha.on_trial_result(None, t, {"asha_epoch": 1, "accuracy": acc})

    assert asha.on_trial_result(None, weak_found, {"asha_epoch": 1, "accuracy": 0.1}) \
        == TrialScheduler.STOP
    assert asha.on_trial_result(None, weak_baseline, {"asha_epoch": 1, "accuracy": 0.1}) \
        == TrialScheduler.CONTINUE
    assert "weak" in searcher.asha_stopped and "base" not in searcher.asha_stopped

    rungs = asha.rungs()
    recorded = {n for r in rungs["rungs"] for n in r["trials"]}
    assert "11" not in recorded and "10" in recorded  # the baseline never enters a rung
    stopped = [s["trial"] for s in rungs["stopped"]]
    assert 10 in stopped and 11 not in stopped
    asha.on_trial_complete(None, weak_baseline, {"accuracy": 0.1})  # no rung, no error
