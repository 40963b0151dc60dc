"""The study's TPE reads the trials once per ask (nas.search.snapshot_tpe.SnapshotTPE): it
must propose exactly what Optuna's own TPE proposes, constant liar and running trials included,
on a real SQLite storage (where the per-parameter re-reading cost 0.5 s per ask)."""

from __future__ import annotations

import optuna

from nas.search.propose import make_sampler


def _proposals(sampler, url: str) -> list[dict]:
    study = optuna.create_study(storage=url, sampler=sampler,
                                directions=["maximize", "minimize"])
    running, seen = [], []
    for i in range(40):
        trial = study.ask()
        params = {"w": trial.suggest_categorical("w", [8, 16, 32, 64]),
                  "d": trial.suggest_int("d", 1, 4),
                  "lr": trial.suggest_float("lr", 1e-3, 1.0, log=True)}
        seen.append(params)
        running.append((trial, params))
        if i % 3 == 2:  # keep some trials RUNNING while others are asked (the liar's case)
            done, p = running.pop(0)
            study.tell(done, [p["w"] * p["d"] / 256 + p["lr"], p["w"] * p["d"]])
    return seen


def test_snapshot_tpe_proposes_what_optuna_tpe_proposes(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = _proposals(make_sampler("tpe", 3), f"sqlite:///{tmp_path / 'a.db'}")
    plain = _proposals(optuna.samplers.TPESampler(seed=3), f"sqlite:///{tmp_path / 'b.db'}")
    assert ours == plain
    assert len({tuple(sorted(p.items())) for p in ours}) > 20  # it did explore


def _suggest(trial) -> dict:
    """A define-by-run space like the studies': conditional categoricals, one int, one float."""
    params = {"block": trial.suggest_categorical("block", ["conv", "attn", "mlp"]),
              "w": trial.suggest_categorical("w", [8, 16, 32, 64]),
              "d": trial.suggest_int("d", 1, 4)}
    if params["block"] == "attn":
        params["heads"] = trial.suggest_categorical("heads", [1, 2, 4])
    params["lr"] = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    return params


def _tell(study, trial, p: dict) -> None:
    size = p["w"] * p["d"] * p.get("heads", 1)
    trial.set_constraint("size", size / 64 - 2)      # infeasible above 128
    trial.set_constraint("lr", p["lr"] - 0.5)        # infeasible above 0.5
    trial.set_constraint("mlp", 0.1 if p["block"] == "mlp" else -1.0)
    study.tell(trial, [p["w"] * p["d"] / 256 + p["lr"], size])


def _ask_keeping_some_running(study, *, asks: int, tell_every: int) -> list[dict]:
    """The driver's way: each ask's candidate starts; one of the oldest running trials is
    told every ``tell_every`` asks (the liar's case). The proposals, in order."""
    running, seen = [], []
    for i in range(asks):
        trial = study.ask()
        seen.append(_suggest(trial))
        running.append((trial, seen[-1]))
        if i % tell_every == tell_every - 1:
            _tell(study, *running.pop(0))
    return seen


def _constrained_proposals(sampler) -> tuple[list[dict], int]:
    """12 asks after 60 told random trials with constraints, two objectives and a few
    trials kept running (the liar's case): the below/above split decides the proposals.
    In memory: the SQLite case is above, the split does not depend on the storage."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        _tell(study, trial, _suggest(trial))
    study.sampler = sampler
    seen = _ask_keeping_some_running(study, asks=12, tell_every=2)
    infeasible = sum(any(v > 0 for v in t.constraints.values())
                     for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]))
    return seen, infeasible


def test_snapshot_tpe_splits_constrained_multi_objective_trials_as_optuna_does():
    """The split into good and bad trials is memoized per ask: proposals stay Optuna's."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in (0, 5):
        ours, infeasible = _constrained_proposals(make_sampler("tpe", seed))
        plain, _ = _constrained_proposals(optuna.samplers.TPESampler(seed=seed))
        assert ours == plain
        assert 10 < infeasible < 55  # both feasible and infeasible trials were split


def _driver_proposals(sampler, storage) -> list[dict]:
    study = optuna.create_study(storage=storage, sampler=sampler,
                                directions=["maximize", "minimize"])
    return _ask_keeping_some_running(study, asks=45, tell_every=3)


def test_through_the_drivers_storage_proposals_stay_optunas(tmp_path):
    """The driver's storage hands the sampler new trial objects only when a trial changes;
    the values the study's TPE keeps per trial object must follow those changes."""
    from nas.run.sole_writer import SoleWriterStorage
    from nas.run.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = _driver_proposals(make_sampler("tpe", 5),
                             SoleWriterStorage(open_storage(f"sqlite:///{tmp_path / 'a.db'}")))
    plain = _driver_proposals(optuna.samplers.TPESampler(seed=5),
                              f"sqlite:///{tmp_path / 'b.db'}")
    assert ours == plain
    assert sum("heads" in p for p in ours) >= 3  # the conditional branch was taken


def _proposals_after(trials: list, sampler) -> list[dict]:
    """12 asks (some kept running) from a study holding ``trials``."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.add_trials(trials)
    return _ask_keeping_some_running(study, asks=12, tell_every=2)


def test_duplicates_the_driver_told_are_not_observations():
    """A trial the search core told as a duplicate (user_attrs duplicate_of) repeats its
    twin's cached result: the study's TPE proposes what it proposes without the repeats,
    while Optuna's TPE counts every repeat as one more good observation."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(50):
        trial = study.ask()
        _tell(study, trial, _suggest(trial))
    originals = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    # the driver's duplicates: the best-looking architectures told again, many times
    best = sorted((t for t in originals if all(v <= 0 for v in t.constraints.values())),
                  key=lambda t: -t.values[0])[:3]
    repeats = [optuna.trial.create_trial(
        params=t.params, distributions=t.distributions, values=t.values,
        user_attrs={"duplicate_of": t.number, "status": "duplicate"},
        system_attrs=t.system_attrs) for t in best for _ in range(15)]
    without = _proposals_after(originals, make_sampler("tpe", 2))
    with_repeats = _proposals_after(originals + repeats, make_sampler("tpe", 2))
    assert with_repeats == without
    counted = _proposals_after(originals + repeats, optuna.samplers.TPESampler(seed=2))
    assert counted != without  # the repeats would have moved the proposals


def test_pooled_above_density_is_optunas_density():
    """The "above" estimator of a categorical parameter pools equal observations into one
    kernel: the density must be Optuna's, for every choice, with and without a prior."""
    import numpy as np
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

    from nas.search.snapshot_tpe import pooled_categorical

    dist = CategoricalDistribution(["a", "b", "c", "d", "e"])
    rng = np.random.default_rng(0)
    every_choice = {"x": np.arange(5)}
    default = optuna.samplers.TPESampler()._parzen_estimator_parameters
    for prior_weight in (1.0, 0.25):
        params = default._replace(prior_weight=prior_weight)
        for n in (1, 7, 30, 3000):  # below and above Optuna's 25 flat weights
            obs = rng.choice([0, 1, 3], size=n, p=[0.7, 0.2, 0.1])  # two choices unseen
            for weights in (None, np.ones(n)):  # "above"; "below" of several objectives
                plain = _ParzenEstimator({"x": obs}, {"x": dist}, params, weights)
                pooled = pooled_categorical("x", dist, obs, params, weights)
                np.testing.assert_allclose(pooled.log_pdf(every_choice),
                                           plain.log_pdf(every_choice), rtol=1e-12)
                assert pooled._mixture_distribution.weights.size <= 4  # 3 seen + prior


def _single_objective_proposals(sampler, trials: int, complete_every: int,
                                max_lr: float) -> list[dict]:
    """30 asks after ``trials`` random trials of one objective: feasible, infeasible
    (lr above ``max_lr``), failed, and pruned ones with intermediate values (with fewer
    complete feasible trials than TPE's good group, the pruned ones are ranked too, and
    with fewer feasible ones, the infeasible ones)."""
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=4))
    for i in range(trials):
        trial = study.ask()
        p = _suggest(trial)
        loss = p["w"] * p["d"] / 256 + p["lr"]
        trial.set_constraint("lr", p["lr"] - max_lr)
        if i % complete_every:
            trial.report(loss * 2, step=i % 3)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif i % 11 == 3:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, loss)
    study.sampler = sampler
    running, seen = [], []
    for i in range(30):
        trial = study.ask()
        seen.append(_suggest(trial))
        running.append((trial, seen[-1]))
        if i % 2:
            done, p = running.pop(0)
            study.tell(done, p["w"] * p["d"] / 256 + p["lr"])
    return seen


def test_single_objective_studies_with_pruned_trials_get_optunas_proposals():
    """Long (400 trials, half complete), mostly pruned (150 trials, a tenth complete: the
    pruned ones fill TPE's good group) and mostly infeasible (the infeasible ones fill
    it): the proposals stay Optuna's. Independent sampling, as with several objectives
    (Optuna 5.0 samples one objective multivariate by default, its own code path)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for case in ((400, 2, 0.7), (150, 10, 0.7), (150, 3, 0.0015)):
        ours = _single_objective_proposals(make_sampler("tpe", 7, {"multivariate": False}),
                                           *case)
        plain = _single_objective_proposals(
            optuna.samplers.TPESampler(seed=7, multivariate=False), *case)
        assert ours == plain, case
