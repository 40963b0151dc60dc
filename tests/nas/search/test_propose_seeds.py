"""Every valid search seed (0 .. 2**32 - 1) must survive the random fallback: the draw's
seed is derived from (seed, trials told, draws) and must stay a valid 32-bit seed
(it used to be arithmetic that overflowed for every seed >= 5 and crashed the search)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from nas.search.core import MAX_DUPLICATE_STREAK
from nas.search.propose import RANDOM_AFTER_DUPLICATES, random_draw_seed

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 - 1])
def test_random_draw_seed_is_a_valid_32_bit_seed_and_differs_per_draw(seed):
    draws = {random_draw_seed(seed, told, d) for told in (0, 1, 10**6) for d in (1, 2)}
    assert all(0 <= s < 2**32 for s in draws)
    assert len(draws) == 6  # each (told, draw) gets its own stream
    assert random_draw_seed(seed, 3, 1) == random_draw_seed(seed, 3, 1)  # resumable


def two_architecture_study(tmp_path: Path) -> Path:
    """Two architectures only: after both are trained every proposal is a duplicate, so
    ten in a row are reached quickly and the core draws at random, then gives up."""
    study = yaml.safe_load(TINY.read_text())
    study["space"]["stem"]["channels"] = 4
    study["space"]["stages"][0]["depth"] = 1
    study["training"]["epochs"] = 1
    study["constraints"] = {}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_nas_search_reaches_the_random_fallback_at_any_seed(tmp_path, seed):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nas.cli", "search", str(two_architecture_study(tmp_path)),
         "--seed", str(seed), "--budget", "30trials", "--out", str(run_dir), "--json",
         "--executor", "local"],  # the core's behaviour: no Ray needed
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["stop_reason"] == "space exhausted"  # both trained, then only repeats
    meta = json.loads((run_dir / "run.json").read_text())
    trials = optuna.load_study(study_name=meta["optuna_study"],
                               storage=f"sqlite:///{run_dir / 'optuna.db'}").trials
    # the repeats were re-drawn in place (no trial each): past RANDOM_AFTER_DUPLICATES of
    # them in a row the fallback drew at random, MAX_DUPLICATE_STREAK - 1 times replaced
    assert [t.user_attrs.get("duplicates_skipped", 0) for t in trials][-1] == (
        MAX_DUPLICATE_STREAK - 1)
    assert MAX_DUPLICATE_STREAK > RANDOM_AFTER_DUPLICATES
    assert summary["counts"]["duplicates_skipped"] >= MAX_DUPLICATE_STREAK - 1
    assert all(t.state.is_finished() for t in trials)
    assert {t.user_attrs["seed"] for t in trials if "seed" in t.user_attrs} == {seed}


def test_a_uniform_draw_is_optunas_random_sampler_draw():
    """The draw that breaks a streak of duplicates is built without a scratch Optuna
    study, yet must be what Optuna's RandomSampler(seed) draws (a search resumed across
    versions draws the same), on a space with conditional choices and single choices."""
    from nas.search.propose import uniform_params
    from nas.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study("digit-scenes")
    for seed in range(40):
        scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        trial = scratch.ask()
        study.space.sample(trial)
        assert uniform_params(study, seed) == trial.params


def test_params_build_the_spec_optuna_would_and_a_missing_choice_builds_none():
    """A repeat's replacement is checked without a trial: the spec must be the one the
    trial builds from the same params; params missing a choice leave it to the trial."""
    from nas.search.propose import spec_of_params, uniform_params
    from nas.study import load_study

    study = load_study("digits")
    for seed in range(10):
        params = uniform_params(study, seed)
        spec, used = spec_of_params(study, {**params, "not.a.choice": 1})
        assert used == params
        assert spec.hash() == study.space.sample(optuna.trial.FixedTrial(params)).hash()
    assert spec_of_params(study, {}) is None
    assert spec_of_params(study, {**params, "stem.channels": 7}) is None  # not offered
