"""The study's TPE reads the trials once per ask (nas.search.propose._SnapshotTPE): it must
propose exactly what Optuna's own TPE proposes, constant liar and running trials included,
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
