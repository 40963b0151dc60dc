"""A sampler that keeps proposing one architecture must not end a search in a large space,
nor cost a storage trial per duplicate: the trial asked is sampled again, in place, as
the duplicate's neighbour (one parameter redrawn), and after RANDOM_AFTER_DUPLICATES
duplicates in a row as one candidate drawn at random (model-based samplers, TPE above
all, do collapse like this on the digits space)."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from nas.budget import parse_budget
from nas.run.ledger import Ledger
from nas.run.rundir import RunDir
from nas.run.sole_writer import driver_storage
from nas.search.core import SearchCore
from nas.search.propose import RANDOM_AFTER_DUPLICATES
from nas.study import load_study

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"


class FirstChoiceSampler(optuna.samplers.BaseSampler):
    """Always the first choice / the lower bound: every trial is the same architecture."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return distribution.choices[0]
        return distribution.low


def _core(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(yaml.safe_load(TINY.read_text()))
    assert study.space.size() > 1
    run = RunDir.create(tmp_path / "run", study.to_dict(), optuna_study=study.name,
                        storage=None, seed=0, budget="1gpuh")
    ostudy = optuna.create_study(study_name=study.name,
                                 storage=driver_storage(run.storage_url()),
                                 sampler=FirstChoiceSampler(),
                                 directions=[o.direction for o in study.objectives])
    core = SearchCore(study, ostudy, run=run, ledger=Ledger(run.ledger_path),
                      budget=parse_budget("1gpuh"), seed=0, session=0, devices=1.0)
    return core, ostudy


def _stored(ostudy):
    """The run's trials as a reader opening the database sees them."""
    return optuna.load_study(study_name=ostudy.study_name,
                             storage=ostudy._storage._backend.url).get_trials(deepcopy=False)


def _spec_hash(core, params):
    return core.study.space.sample(optuna.trial.FixedTrial(params)).hash()


def test_a_duplicate_is_replaced_in_place_by_its_neighbour(tmp_path):
    core, ostudy = _core(tmp_path)
    first = core.propose("t0")
    second = core.propose("t1")  # the sampler proposes `first` again and again

    assert isinstance(second, dict), f"the search stopped: {core.stop_reason}"
    trials = _stored(ostudy)
    # the repeat is no trial: the trial asked for it holds the neighbour instead
    assert [t.number for t in trials] == [first["number"], second["number"]]
    asked = trials[1]
    assert asked.user_attrs["hash"] != trials[0].user_attrs["hash"]
    assert asked.user_attrs["proposed_by"] == "neighbour"
    assert asked.user_attrs["neighbour_of"] == first["number"]
    assert asked.user_attrs["duplicates_skipped"] == 1
    redrawn = asked.user_attrs["redrawn"]
    before, after = trials[0].params, asked.params
    assert after[redrawn] != before[redrawn]
    # every other parameter the original had and the neighbour uses is the original's
    assert all(after[k] == v for k, v in before.items() if k in after and k != redrawn)
    # what the database holds is the neighbour the worker runs, nothing of the repeat
    assert asked.system_attrs["fixed_params"].items() >= asked.params.items()
    assert _spec_hash(core, asked.params) == asked.user_attrs["hash"]
    assert core.snapshot()["duplicate"] == 0  # counted when the trial is told


def test_a_streak_of_duplicates_gets_a_random_candidate_not_a_finished_search(
        tmp_path, monkeypatch):
    import nas.search.propose as propose

    # neighbours that are duplicates too (a nearly exhausted corner of the space)
    monkeypatch.setattr(propose, "neighbour", lambda study, params, seed, of: (
        params, {"proposed_by": "n"}))
    core, ostudy = _core(tmp_path)
    core.propose("t0")
    second = core.propose("t1")

    assert isinstance(second, dict), f"the search stopped: {core.stop_reason}"
    assert core.stop_reason is None
    trials = _stored(ostudy)
    assert len(trials) == 2
    assert trials[1].user_attrs["hash"] != trials[0].user_attrs["hash"]
    assert trials[1].user_attrs.get("proposed_by") == "random"
    # exactly the streak that triggers the fallback was skipped
    assert trials[1].user_attrs["duplicates_skipped"] == RANDOM_AFTER_DUPLICATES


def test_a_dead_drivers_trial_that_never_got_its_params_is_not_rerun_blindly(tmp_path):
    # The driver writes a trial's params when it hands the trial out; one killed between
    # the ask and that write leaves a RUNNING trial without params. The next session
    # fails it and re-runs what was queued for it, or nothing (not a fresh sample
    # labelled as its retry).
    core, ostudy = _core(tmp_path)
    asked = ostudy.ask()  # the sampler's: nothing queued
    ostudy.enqueue_trial({"stem.channels": 8}, user_attrs={"proposed_by": "neighbour"})
    queued = ostudy.ask()  # a queued one: its params are in fixed_params until suggested
    assert not ostudy.trials[asked.number].params
    assert core.recover() == 2
    trials = ostudy.get_trials(deepcopy=False)
    assert {t.number: t.user_attrs.get("status") for t in trials[:2]} == {
        asked.number: "interrupted", queued.number: "interrupted"}
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert [t.user_attrs["retry_of"] for t in retries] == [queued.number]
    assert retries[0].system_attrs["fixed_params"] == {"stem.channels": 8}
