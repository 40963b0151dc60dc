"""``nas search --dry-run`` (nas.search.plan): the arithmetic of the expected number of trials,
the dataset check that never needs the data, and the plan through the real CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from PIL import Image

from nas.budget import parse_budget
from nas.cli import main
from nas.search.plan import (
    asha_expected_epochs,
    data_status,
    expected_trials,
    trial_seconds,
)
from nas.study import load_study


# ---------------------------------------------------------------------- arithmetic
def test_asha_expected_epochs_closed_forms():
    # rungs 1, 2, 4 of 8 epochs, half promoted at each: 1 + 1/2 + 2/4 + 4/8
    assert asha_expected_epochs(8, 1, 2) == pytest.approx(2.5)
    # rungs 3, 9 of 15, a third promoted: 3 + 6/3 + 6/9
    assert asha_expected_epochs(15, 3, 3) == pytest.approx(3 + 2 + 6 / 9)
    assert asha_expected_epochs(4, 4, 2) == 4.0  # no rung before the last epoch


def test_expected_trials_per_budget_kind():
    device = parse_budget("1gpuh")
    assert expected_trials(device, trial_s=60, devices=0.5, parallel=4) == pytest.approx(120)
    assert expected_trials(device, trial_s=60, devices=1, parallel=4,
                           spent=1800) == pytest.approx(30)
    wall = parse_budget("1h")
    assert expected_trials(wall, trial_s=60, devices=1, parallel=4) == pytest.approx(240)
    assert expected_trials(parse_budget("25trials"), trial_s=60, devices=1,
                           parallel=4, spent=5) == 20


def test_trial_seconds_by_hand():
    study = load_study(None)  # digits: 1438 training images after the split
    t = study.training
    parts = trial_seconds(n_train=1438, n_val=359, study=study, step_s=0.1, latency_s=0.002)
    steps = 1438 // t.batch_size
    assert parts["steps_per_epoch"] == steps
    eval_s = 359 * 0.1 / t.batch_size / 3
    assert parts["epoch_s"] == pytest.approx(steps * 0.1 + eval_s)
    m = study.measure
    assert parts["checks_s"] == pytest.approx((m.warmup + m.repeats) * 0.002 + 0.2)
    assert parts["full_s"] == pytest.approx(parts["checks_s"] + t.epochs * parts["epoch_s"])


# ---------------------------------------------------------------------- the dataset
def _small_study(tmp_path: Path, data: dict, classes: int = 10, size: int = 32) -> Path:
    """A study with a tiny space on the given dataset (cheap to plan)."""
    doc = {"version": 1, "name": "small", "data": data,
           "training": {"epochs": 4, "batch_size": 32},
           "objectives": [{"metric": "accuracy", "direction": "maximize"}],
           "constraints": {"params": 50000},
           "measure": {"batch_size": 1, "warmup": 1, "repeats": 2},
           "space": {"input": {"channels": 3, "size": [size, size]}, "classes": classes,
                     "stem": {"kind": "conv", "channels": [8, 16], "kernel": 3,
                              "stride": 2},
                     "stages": [{"channels": [8, 16], "depth": [1, 2], "stride": 2,
                                 "blocks": ["basic"]}]},
           "resources": {"concurrency": 2, "cpus_per_trial": 1, "gpus_per_trial": 0},
           "fidelity": {"scheduler": "asha", "grace_epochs": 1, "reduction_factor": 2},
           "budget": "2gpumin"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_missing_cifar_is_reported_not_needed(tmp_path):
    study = load_study(_small_study(tmp_path, {"dataset": "cifar10", "val_fraction": 0.1}))
    status = data_status(study, data_dir=tmp_path)
    assert status["present"] is False
    assert "CIFAR-10 not found" in status["message"] and str(tmp_path) in status["message"]
    assert (status["train"], status["val"]) == (45000, 5000)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert data_status(study, data_dir=tmp_path)["present"] is True


def test_image_folder_is_counted(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    study = load_study(_small_study(tmp_path, {"dataset": "imagefolder", "size": [8, 8]},
                                    classes=2, size=8))
    status = data_status(study, data_dir=root)
    assert status["present"] and status["sizes"] == "counted"
    assert (status["train"], status["val"]) == (6, 4)
    missing = data_status(study, data_dir=tmp_path / "nowhere")
    assert missing["present"] is False and missing["train"] is None
    assert "image folder not found" in missing["message"]


# ---------------------------------------------------------------------- the CLI
def test_dry_run_json_without_the_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _small_study(tmp_path, {"dataset": "cifar10", "val_fraction": 0.1})
    assert main(["search", str(path), "--dry-run", "--json",
                 "--data-dir", str(tmp_path / "data")]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["data"]["present"] is False
    assert any("CIFAR-10 not found" in w for w in plan["warnings"])
    study = load_study(path)
    assert plan["space"]["size"] == study.space.size()
    assert plan["objectives"] == [{"metric": "accuracy", "direction": "maximize"}]
    assert plan["constraints"] == {"params": 50000}
    t = plan["trial"]
    assert t["steps_per_epoch"] == 45000 // 32
    assert t["expected_epochs"] == pytest.approx(asha_expected_epochs(4, 1, 2))
    # the expected number of trials is the budget over the expected device time
    assert plan["expected_trials"] == math.floor(120 / t["expected_device_s"])
    assert plan["resources"]["per_trial"]["devices_charged"] == 1.0
    assert not (tmp_path / "runs").exists()  # a dry run creates no run directory


def test_dry_run_text_on_the_default_study(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--dry-run", "--budget", "3gpumin", "--concurrency", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("study digits")
    assert "digits (bundled with scikit-learn): present" in out
    assert "budget    3gpumin" in out and "concurrency 1" in out
    assert "trials within the budget" in out and "[estimate]" in out
    assert not (tmp_path / "runs").exists()


def test_dry_run_bad_budget_is_one_line(capsys):
    assert main(["search", "--dry-run", "--budget", "lots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nas search: error: --budget:")


def test_dry_run_of_a_resumed_run_plans_what_is_left(tmp_path, capsys):
    from nas.run.ledger import Ledger, LedgerEntry
    from nas.run.rundir import RunDir

    study = load_study(_small_study(tmp_path, {"dataset": "cifar10", "val_fraction": 0.1}))
    run = RunDir.create(tmp_path / "run", study.to_dict(), optuna_study="small",
                        storage=None, seed=0, budget="2gpumin")
    Ledger(run.ledger_path).append(LedgerEntry.make(0, 1, "ok", 30.0, 1.0, session=0))
    assert main(["search", "--resume", str(run.path), "--dry-run", "--json",
                 "--data-dir", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["budget"]["spent"] == pytest.approx(0.5)  # 30 device-seconds of 2gpumin
    assert plan["budget"]["left"] == pytest.approx(1.5)
    assert plan["expected_trials"] == math.floor(90 / plan["trial"]["expected_device_s"])
    assert plan["resources"]["storage"] == f"sqlite:///{run.path / 'optuna.db'}"
