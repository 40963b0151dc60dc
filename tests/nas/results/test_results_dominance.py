"""One dominance rule over found trials and baselines, through every results verb.

A real small search (in-process executor, SQLite, synthetic data) is copied and given a
baseline trial, told the way the core tells one, that dominates the knee of the found trials
(same accuracy, one parameter fewer): `nas status`, `nas pareto` (text, JSON, PNG and
HTML plots), `nas export` (knee, best:, trial:N) and `nas report` must all keep that
trial off the front, never pick it silently, and agree. A second copy carries the same
baseline only as `nas rank` measured it (RUN_DIR/rank.json): the same rule applies."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from types import SimpleNamespace

import optuna
import pytest
import yaml
from test_results_run import BASELINE, STUDY

from nas.results.front import pareto
from nas.results.records import open_run
from nas.search.driver import run_search
from search_space import ModelSpec

BASELINE_NAME = "zoo:hand-made"


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dominance") / "run"
    run_search({**STUDY, "budget": "8trials"}, run_dir=out, progress=False, executor="local")
    return out


def cli(*argv: str) -> SimpleNamespace:
    """``nas ARGV`` through the CLI's entry point in this process (ten verbs a case:
    a process each cost more than the verbs)."""
    from nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, err.getvalue()[-2000:]
    return SimpleNamespace(stdout=out.getvalue(), stderr=err.getvalue())


def knee_and_rival(run) -> tuple[int, dict[str, float]]:
    """The knee of the found trials alone and baseline values that dominate it."""
    front = pareto(open_run(run))
    assert len(front.front) >= 2, "the test needs a front with more than the knee"
    knee = front.knee
    return knee.number, {"accuracy": knee.value("accuracy"),
                         "params": knee.value("params") - 1}


def add_search_baseline(run, values: dict[str, float]) -> None:
    meta = json.loads((run / "run.json").read_text())
    study = optuna.load_study(study_name=meta["optuna_study"],
                              storage=f"sqlite:///{run / 'optuna.db'}")
    spec = ModelSpec.from_dict(BASELINE)
    study.add_trial(optuna.trial.create_trial(
        values=[values["accuracy"], values["params"]],
        constraints={"params": (values["params"] - 6000) / 6000, "oom": 0.0},
        user_attrs={"kind": "baseline", "baseline": BASELINE_NAME, "status": "ok",
                    "spec": spec.to_dict(), "hash": spec.hash(), "epochs_done": 2,
                    "metrics": dict(values)}))


def add_rank_baseline(run, values: dict[str, float]) -> None:
    """RUN_DIR/rank.json as `nas rank` writes it, with one baseline row (2 seeds)."""
    runs = [{"seed": s, "status": "ok", "metrics": dict(values), "message": ""}
            for s in (0, 1)]
    row = {"name": BASELINE_NAME, "kind": "baseline", "trial": None, "hash": "x",
           "status": "ok", "seeds_ok": 2, "runs": runs, "pareto_rank": 1, "dominates": [],
           "message": "", "metrics": {m: {"mean": v, "std": 0.0, "sem": 0.0, "n": 2}
                                      for m, v in values.items()}}
    rank = {"study": STUDY["name"], "seeds": [0, 1], "rows": [row],
            "objectives": STUDY["objectives"]}
    (run / "rank.json").write_text(json.dumps(rank))


@pytest.mark.parametrize("measured_by", ["search", "rank"])
def test_every_verb_keeps_a_baseline_dominated_trial_off_the_front(plain_run, tmp_path,
                                                                   measured_by):
    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    beaten, rival = knee_and_rival(run)
    (add_search_baseline if measured_by == "search" else add_rank_baseline)(run, rival)

    # nas pareto --json: off the front, listed with the baseline that beats it.
    d = json.loads(cli("pareto", str(run), "--json").stdout)
    front = [f["trial"] for f in d["front"]]
    assert beaten not in front and d["knee"] in front and d["knee"] != beaten
    listed = {b["trial"]: b for b in d["dominated_by_baseline"]}
    assert listed[beaten]["baselines"] == [BASELINE_NAME]
    assert listed[beaten]["would_be_on_front"] is True
    base = {b["name"]: b for b in d["baselines"]}[BASELINE_NAME]
    assert base["on_front"] is True and base["feasible"] is True
    assert base["source"].startswith("search" if measured_by == "search" else "nas rank")
    assert d["hypervolume_with_baselines"] > d["hypervolume"]
    text = cli("pareto", str(run)).stdout
    assert "feasible trials a baseline dominates" in text and "hand-made" in text

    # nas status: the same front size, a best that is on it, the same dominated trial.
    st = json.loads(cli("status", str(run), "--json").stdout)
    assert st["front_size"] == len(front)
    assert st["best"]["number"] in front
    assert st["dominated_by_baseline"] == {str(n): b["baselines"] for n, b in listed.items()}
    assert f"{beaten} by hand-made" in cli("status", str(run)).stdout

    # nas export: knee and best: never return it; trial:N says it is beaten.
    for pick in ("knee", "best:accuracy", "best:params"):
        out = tmp_path / f"{pick.replace(':', '-')}.yaml"
        printed = cli("export", str(run), "--pick", pick, "-o", str(out)).stdout
        exported = yaml.safe_load(out.read_text())["meta"]["provenance"]["trial"]
        assert exported != beaten, pick
        assert exported in front or pick.startswith("best:"), pick
    assert "skipped" in printed or beaten not in listed  # the reason says what was skipped
    knee_out = tmp_path / "knee.yaml"
    assert yaml.safe_load(knee_out.read_text())["meta"]["provenance"]["trial"] == d["knee"]
    forced = cli("export", str(run), "--pick", f"trial:{beaten}", "-o",
                 str(tmp_path / "forced.yaml")).stdout
    assert "dominated by baseline hand-made" in forced

    # Plots: the baseline drawn and labelled, the beaten trial marked, knee and staircase
    # in the HTML as in the PNG.
    page = tmp_path / "front.html"
    cli("pareto", str(run), "--plot", str(page), "--objectives", "accuracy,params")
    html = page.read_text()
    for needle in ("hand-made", "dominated by a baseline", "front staircase",
                   f"knee (#{d['knee']})", "reference accuracy 0"):
        assert needle in html, needle
    png = tmp_path / "front.png"
    cli("pareto", str(run), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # nas report: the same front, the beaten trial listed, the chosen one stated.
    report = tmp_path / "report.html"
    cli("report", str(run), "-o", str(report))
    page = report.read_text()
    assert "Feasible trials a baseline dominates" in page
    assert f"chooses <b>trial {d['knee']}</b>" in page
    assert "Exports made" in page
