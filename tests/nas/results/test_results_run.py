"""The results verbs on a small REAL search (in-process executor, SQLite, synthetic
1x8x8 data, two baselines: a small feasible one and ResNet-18, which breaks the parameter
limit and so is trained as a comparison and marked infeasible): `nas pareto` (front,
hypervolume, plots, errors), `nas export` (then build: the same network), `nas rank`
(the same protocol as the search) and `nas report`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from test_results_math import hv_grid  # tests/nas is on sys.path (rootdir-less tests)

from nas.cli import main
from nas.errors import UserError
from nas.results.export import export, pick_trial
from nas.results.front import pareto
from nas.results.rank import RANK_JSON, rank_run
from nas.results.records import open_run
from nas.results.report import write_report
from nas.run.dominance import dominates, to_minimization
from nas.search.driver import run_search
from search_space import ModelSpec, load_spec

PARAMS_LIMIT = 6000
STUDY = {
    "version": 1, "name": "results-test",
    "data": {"dataset": "synthetic", "synthetic": {
        "channels": 1, "size": [8, 8], "classes": 4, "train": 128, "val": 64, "signal": 2.0}},
    "training": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.05,
                 "momentum": 0.9},
    "objectives": [{"metric": "accuracy", "direction": "maximize"},
                   {"metric": "params", "direction": "minimize"}],
    "constraints": {"params": PARAMS_LIMIT},
    "measure": {"batch_size": 1, "warmup": 1, "repeats": 3},
    "space": {"input": {"channels": 1, "size": [8, 8]}, "classes": 4,
              "stem": {"kind": "conv", "channels": [4, 8], "kernel": 3, "stride": 1},
              "stages": [{"channels": [8, 16, 24], "depth": [1, 2], "stride": 2,
                          "blocks": ["basic"]}]},
    "sampler": {"name": "random", "seed": 0},
    "resources": {"concurrency": 2, "cpus_per_trial": 1, "gpus_per_trial": 0},
    "fidelity": {"scheduler": "none"},
    "budget": "10trials",
}
BASELINE = {"version": 1, "name": "small-baseline", "input": {"channels": 3, "size": [32, 32]},
            "classes": 10, "stem": {"kind": "conv", "channels": 4},
            "stages": [{"channels": 8, "stride": 2, "blocks": [{"type": "basic"}]}]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    baseline = root / "small-baseline.yaml"
    baseline.write_text(yaml.safe_dump(BASELINE))
    study = {**STUDY, "baselines": [str(baseline), "zoo:resnet18-cifar"]}
    out = root / "run"
    run_search(study, run_dir=out, with_baselines=True, progress=False, executor="local")
    return out


@pytest.fixture(scope="module")
def results(run_dir):
    return open_run(run_dir)


@pytest.fixture(scope="module")
def ranked(results):
    with open("/dev/null", "w") as quiet:
        return rank_run(results, seeds=2, top=2, stream=quiet)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- pareto
def test_the_run_has_what_the_tests_need(results):
    statuses = {t.status for t in results.trials if t.kind == "search"}
    assert "ok" in statuses and "infeasible" in statuses
    assert {b.name for b in results.baselines()} >= {"zoo:resnet18-cifar"}


def test_front_is_feasible_and_non_dominated(results):
    res = pareto(results)
    dirs = res.directions
    feasible = [t for t in results.trials if t.kind == "search" and t.state == "COMPLETE"
                and t.status == "ok" and t.user_attrs.get("duplicate_of") is None]
    pts = {t.number: to_minimization([t.value(m) for m in res.metrics], dirs)
           for t in feasible}
    front = {t.number for t in res.front}
    assert front, "a run with feasible trials has a front"
    for t in res.front:
        assert t.kind == "search" and t.status == "ok" and t.constraints_met
        assert t.value("params") <= PARAMS_LIMIT
        assert not any(dominates(q, pts[t.number]) for q in pts.values())
    # every feasible trial off the front is dominated by a front trial or a baseline
    # (one rule over both: the small baseline beats some found trials in this run)
    base = {b.name: to_minimization([b.value(m) for m in res.metrics], dirs)
            for b in res.baselines if b.constraints_met}
    for n, p in pts.items():
        beaten_by = [name for name, q in base.items() if dominates(q, p)]
        assert res.dominated_by_baseline.get(n, []) == beaten_by
        assert (n in front) != (bool(beaten_by) or any(dominates(pts[f], p) for f in front))
    assert not front & {t.number for t in results.trials if t.status == "infeasible"}


def test_hypervolume_of_the_run_matches_brute_force_and_optuna(results):
    from optuna._hypervolume import compute_hypervolume

    res = pareto(results)
    assert res.reference == [0.0, float(PARAMS_LIMIT)]  # accuracy 0, the params limit
    # the found trials' own front (a baseline does not take volume away from the search)
    found = [to_minimization([t.value(m) for m in res.metrics], res.directions)
             for t in res.feasible]
    pts = [p for p in found if not any(dominates(q, p) for q in found)]
    ref = to_minimization(res.reference, res.directions)
    assert res.hypervolume > 0
    assert res.hypervolume == pytest.approx(hv_grid(pts, ref), rel=1e-12)
    assert res.hypervolume == pytest.approx(
        compute_hypervolume(np.array(pts), np.array(ref)), rel=1e-9)


def test_pareto_json(results, capsys):
    code, out, _ = _cli(capsys, "pareto", str(results.run.path), "--json")
    assert code == 0
    d = json.loads(out)
    assert {"objectives", "reference_point", "hypervolume", "front", "baselines"} <= set(d)
    res = pareto(results)
    assert d["hypervolume"] == pytest.approx(res.hypervolume)
    assert [f["trial"] for f in d["front"]] == [t.number for t in res.front]
    for f in d["front"]:
        t = results.trial(f["trial"])
        assert f["hash"] == t.hash and f["values"]["params"] == t.metrics["params"]
    names = {b["name"]: b for b in d["baselines"]}
    resnet = names["zoo:resnet18-cifar"]
    # over the params limit: trained as a comparison, shown with its accuracy, infeasible
    assert resnet["feasible"] is False and 0.0 <= resnet["values"]["accuracy"] <= 1.0
    assert resnet["values"]["params"] > PARAMS_LIMIT


def test_pareto_on_other_objectives(results, capsys):
    code, out, _ = _cli(capsys, "pareto", str(results.run.path), "--json",
                        "--objectives", "accuracy,latency_ms,macs")
    assert code == 0
    d = json.loads(out)
    assert [o["metric"] for o in d["objectives"]] == ["accuracy", "latency_ms", "macs"]
    for f in d["front"]:
        t = results.trial(f["trial"])
        assert f["values"]["latency_ms"] == t.metrics["latency_ms"]


@pytest.mark.parametrize("objectives", [None, "accuracy,params,latency_ms"])
def test_plots_are_written(results, tmp_path, capsys, objectives):
    extra = ["--objectives", objectives] if objectives else []
    png, page = tmp_path / "front.png", tmp_path / "front.html"
    assert _cli(capsys, "pareto", str(results.run.path), "--plot", str(png), *extra)[0] == 0
    assert _cli(capsys, "pareto", str(results.run.path), "--plot", str(page), *extra)[0] == 0
    data = png.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert 'class="plotly-graph-div"' in text
    assert "resnet18-cifar" in text and "small-baseline" in text  # baselines labelled
    assert not re.search(r"<script[^>]+src=", text)  # plotly.js embedded, not fetched


def test_missing_run_dir_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "pareto", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_unknown_objective_is_one_line_exit_2(results, capsys):
    code, out, err = _cli(capsys, "pareto", str(results.run.path), "--objectives",
                          "accuracy,speed")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "'speed'" in err and "latency_ms" in err  # names it and what is allowed
    code, _, err = _cli(capsys, "pareto", str(results.run.path), "--plot", "x.svg")
    assert code == 2 and ".png" in err


# --------------------------------------------------------------------------- export
@pytest.mark.parametrize("pick", ["knee", "best:accuracy", "best:params"])
def test_export_then_build_gives_the_trials_network(results, tmp_path, capsys, pick):
    arch = tmp_path / "arch.yaml"
    code, out, err = _cli(capsys, "export", str(results.run.path), "--pick", pick,
                          "-o", str(arch))
    assert code == 0, err
    spec = load_spec(arch)
    prov = spec.meta["provenance"]
    trial = results.trial(prov["trial"])
    assert trial.status == "ok" and trial.constraints_met
    model = spec.build()
    original = ModelSpec.from_dict(trial.spec).build()
    assert model.state_dict().keys() == original.state_dict().keys()
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in original.state_dict().items()}
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for p in original.parameters()) == trial.metrics["params"]
    code, out, _ = _cli(capsys, "build", str(arch), "--json")
    assert code == 0 and json.loads(out)["params"] == n
    assert spec.hash() == trial.hash == prov["hash"]
    # Provenance: study, trial, measured metrics and how they were measured.
    assert prov["study"] == "results-test" and prov["pick"] == pick
    assert prov["metrics"]["accuracy"] == trial.metrics["accuracy"]
    m = prov["measured"]
    assert m["device"] == "cpu" and m["precision"] == "fp32"
    assert m["batch_size"] == 32 and m["torch"] == torch.__version__
    assert m["latency"]["batch"] == 1 and m["latency"]["repeats"] == 3
    # best: among the feasible trials no baseline dominates (the small baseline beats
    # some in this run); the reason says how many were skipped
    beaten = pareto(results).dominated_by_baseline
    allowed = [t for t in results.found() if t.number not in beaten]
    assert trial.number not in beaten
    if beaten and pick.startswith("best:"):
        assert f"{len(beaten)} trial(s) a baseline dominates skipped" in prov["why"]
    if pick == "best:params":
        assert trial.metrics["params"] == min(t.metrics["params"] for t in allowed)
    if pick == "best:accuracy":
        assert trial.value("accuracy") == max(t.value("accuracy") for t in allowed)
    if pick == "knee":
        assert trial.number == pareto(results).knee.number


def test_export_limits_and_refusals(results, tmp_path):
    found = results.found()
    beaten = pareto(results).dominated_by_baseline
    smallest = min(t.value("params") for t in found if t.number not in beaten)
    picked = pick_trial(results, "best:accuracy", {"params": smallest})
    assert picked.trial.value("params") == smallest
    for t in found:  # a limit only a baseline-dominated trial meets: refused, saying so
        if t.number in beaten and t.value("params") < smallest:
            with pytest.raises(UserError, match="dominated by a baseline"):
                pick_trial(results, "best:accuracy", {"params": t.value("params")})
    with pytest.raises(UserError, match="no feasible trial with params <= 1"):
        pick_trial(results, "knee", {"params": 1})
    infeasible = next(t for t in results.trials if t.status == "infeasible")
    with pytest.raises(UserError, match=f"trial {infeasible.number} is infeasible"):
        pick_trial(results, f"trial:{infeasible.number}")
    with pytest.raises(UserError, match="allowed: best:OBJECTIVE"):
        pick_trial(results, "worst")
    rec = export(results, f"trial:{found[0].number}", tmp_path / "t.yaml")
    assert rec["trial"] == found[0].number
    assert (results.run.exports_dir / f"results-test-trial{found[0].number}.yaml").is_file()


# --------------------------------------------------------------------------- rank
def test_rank_reevaluates_under_the_search_protocol(results, ranked):
    rows = ranked["rows"]
    found = [r for r in rows if r["kind"] == "found"]
    baselines = {r["name"]: r for r in rows if r["kind"] == "baseline"}
    assert len(found) == 2 and set(baselines) == set(results.study.baselines)
    assert json.loads((results.run.path / RANK_JSON).read_text()) == ranked
    for r in found:
        t = results.trial(r["trial"])
        seed0 = r["runs"][0]
        # Seed 0 with the search's data, training and threads: the search's own numbers.
        assert seed0["seed"] == 0 and seed0["status"] == "ok"
        assert seed0["metrics"]["accuracy"] == t.metrics["accuracy"]
        assert seed0["metrics"]["train_loss"] == pytest.approx(t.metrics["train_loss"],
                                                               rel=1e-5)
        assert r["metrics"]["params"] == {"mean": t.metrics["params"], "std": 0.0,
                                          "sem": 0.0, "n": 2}
        accs = [run["metrics"]["accuracy"] for run in r["runs"]]
        assert r["metrics"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    resnet = baselines["zoo:resnet18-cifar"]
    # over the params limit: trained as a comparison (its accuracy measured, its tests
    # made) but marked, and out of the Pareto ranks like the front leaves it out
    assert resnet["status"].startswith("infeasible") and resnet["pareto_rank"] is None
    assert resnet["over_limits"]["params"] > 0 and resnet["metrics"]["accuracy"]["n"] == 2
    ranked_rows = [r for r in rows if r["pareto_rank"] is not None]
    assert min(r["pareto_rank"] for r in ranked_rows) == 1
    for r in found:  # significant on every objective implies a better Pareto rank
        for name in r["dominates"]:
            assert r["pareto_rank"] < baselines[name]["pareto_rank"]
    # one dominance test per (found, measured baseline) pair; a row's "dominates" lists
    # exactly the pairs whose Holm-adjusted intersection-union p-value is below alpha
    pairs = ranked["dominance"]["pairs"]
    assert len(pairs) == len(found) * len([b for b in baselines.values() if b["seeds_ok"]])
    for r in found:
        assert r["dominates"] == [p["baseline"] for p in pairs
                                  if p["found"] == r["name"] and p["p_holm"] < 0.05]
    objectives = [o["metric"] for o in ranked["objectives"]]
    assert all(p["p_holm"] >= p["p"] and p["weakest"] in objectives for p in pairs)
    # One test per (found, measured baseline, objective), Holm-adjusted, paired by seed.
    small = [b for b in baselines.values() if b["seeds_ok"]]
    tests = ranked["comparisons"]
    assert len(tests) == len(found) * len(small) * 2
    for t in tests:
        assert t["test"].startswith("paired t") and t["n_pairs"] == 2
        assert t["p_holm"] >= t["p"]
        f = next(r for r in found if r["name"] == t["found"])
        b = baselines[t["baseline"]]
        key = t["compared_on"]
        assert t["diff"] == pytest.approx(f["metrics"][key]["mean"] - b["metrics"][key]["mean"])
    assert ranked["test"]["alpha"] == 0.05 and "Holm" in ranked["test"]["name"]
    assert len(ranked["load_average_1_5_15"]["start"]) == 3
    assert ranked["protocol"]["threads_pinned"] == 1
    for r in rows:
        for run in r["runs"]:
            if run["status"] == "ok":  # the spread of each latency measurement is known
                assert run["latency_spread"] >= 0 and isinstance(run["latency_noisy"], bool)


def test_rank_cli_text_says_what_dominates_means(results, ranked, capsys):
    from nas.commands.rank import format_text

    text = format_text(ranked)
    assert "Holm" in text and "alpha 0.05" in text and "trial " in text
    assert "resnet18-cifar" in text and "latency compared on" in text
    assert "seeds:" in text and "found - baseline" in text
    assert "does the found dominate the baseline" in text and "intersection-union" in text


def test_rank_continues_from_the_saved_evaluations(results, ranked, tmp_path, capsys):
    """More seeds after a ranking evaluate only the new ones; the saved ones are the
    ranking's own numbers."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(results.run.path, run)
    code, out, err = _cli(capsys, "rank", str(run), "--seeds", "3", "--top", "2", "--json")
    assert code == 0, err
    again = json.loads(out)
    runnable = [r for r in again["rows"] if r["status"] != "invalid"]
    assert again["evaluations"] == {"total": 3 * len(runnable), "reused": 2 * len(runnable),
                                    "log": str(run / "rank_evals.jsonl")}
    assert err.count("saved in rank_evals.jsonl") == 2 * len(runnable)
    # seed-major: every architecture's seed 0, then every seed 1, then every seed 2
    progress = [line for line in err.splitlines() if line.startswith("[")]
    seeds = [int(line.split(" seed ")[1].split(":")[0]) for line in progress]
    assert seeds == sorted(seeds) and len(progress) == 3 * len(runnable)
    logged = [json.loads(x)["seed"] for x in (run / "rank_evals.jsonl").read_text().splitlines()]
    assert logged == sorted(logged)
    before = {r["name"]: r for r in ranked["rows"]}
    for r in runnable:
        assert [x["seed"] for x in r["runs"]] == [0, 1, 2]
        assert r["runs"][:2] == before[r["name"]]["runs"]


def test_another_alpha_judges_the_saved_evaluations_again(results, ranked, tmp_path, capsys):
    """--alpha changes the verdicts, not the numbers: nothing is trained again, every
    p-value is the same, and a verdict is "significant" exactly when its Holm p is below
    the new alpha."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(results.run.path, run)
    code, out, err = _cli(capsys, "rank", str(run), "--seeds", "2", "--top", "2",
                          "--alpha", "0.9", "--json")
    assert code == 0, err
    loose = json.loads(out)
    assert loose["evaluations"]["reused"] == loose["evaluations"]["total"]
    assert loose["test"]["alpha"] == 0.9 and loose["dominance"]["alpha"] == 0.9
    assert "alpha 0.9" in loose["dominance_rule"]
    assert [t["p_holm"] for t in loose["comparisons"]] == [
        t["p_holm"] for t in ranked["comparisons"]]
    for t in loose["comparisons"]:
        assert t["significant"] == (t["p_holm"] is not None and t["p_holm"] < 0.9)
    for p in loose["dominance"]["pairs"]:
        assert p["dominates"] == (p["p_holm"] is not None and p["p_holm"] < 0.9)
    with pytest.raises(SystemExit) as bad:  # argparse's own exit
        main(["rank", str(run), "--alpha", "0"])
    assert bad.value.code == 2
    assert "--alpha: 0 is not between 0 and 1" in capsys.readouterr().err


def test_rank_interrupted_by_ctrl_c_says_how_to_continue(results, tmp_path):
    """A real SIGINT in the middle of a ranking: exit 130, one line naming the log, the
    finished evaluations kept; the same command then re-uses them."""
    import shutil
    import signal

    run = tmp_path / "run"
    shutil.copytree(results.run.path, run)
    (run / "rank_evals.jsonl").unlink()
    def rank(seeds: int) -> list[str]:
        return [sys.executable, "-m", "nas.cli", "rank", str(run), "--seeds", str(seeds),
                "--top", "2"]

    # 200 seeds: hundreds of evaluations, so the ranking is surely still running when
    # the signal comes (one evaluation of this tiny study takes a fraction of a second)
    proc = subprocess.Popen(rank(200), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:  # the first evaluation is saved: interrupt the next ones
        if line.startswith("[1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, rest
    assert "interrupted" in rest and "rank_evals.jsonl" in rest and "Traceback" not in rest
    saved = [json.loads(line) for line in (run / "rank_evals.jsonl").read_text().splitlines()]
    assert 1 <= len(saved) < 200  # the first architecture's first seeds, in order
    assert [e["seed"] for e in saved] == list(range(len(saved)))
    done = subprocess.run(rank(2) + ["--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["evaluations"]["reused"] == min(len(saved), 2)


# --------------------------------------------------------------------------- report
def test_report_is_one_self_contained_page(results, ranked, tmp_path):
    rec = export(results, "knee", tmp_path / "chosen.yaml")
    page = write_report(results, tmp_path / "report.html")
    text = page.read_text()
    assert "results-test" in text and "Budget" in text and "10 trials" in text
    m = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert m and base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched
    assert "Ranking" in text and "Holm" in text
    assert rec["name"] in text and "provenance" in text
    assert f"{ranked['rows'][0]['metrics']['accuracy']['mean']:.4g}" in text
