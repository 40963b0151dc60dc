"""Device profiles: ``nas profile-device`` writes one measured on this machine; the
prediction walks a spec's blocks over the profile's curves; ``nas search --dry-run``
prices a trial from a profile, and never from this CPU for a GPU study."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.errors import UserError
from nas.evaluate.candidates import sample_candidates, sample_specs
from nas.evaluate.device_profile import (
    block_key,
    curve_seconds,
    list_profiles,
    load_profile,
    predict_step_s,
    profile_yaml,
)
from nas.search.plan import SAMPLES, make_plan
from nas.study import load_study
from search_space.zoo import load_zoo


def nas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """A quick profile measured on this machine through the CLI."""
    out = tmp_path_factory.mktemp("profile") / "cpu.yaml"
    r = nas("profile-device", "--device", "cpu", "--quick", "--batch", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    return out


def linear_profile(rate: float = 1e-9, overhead: float = 0.01) -> dict:
    """Every curve: seconds = rate x MACs x images (a straight line in log-log)."""
    def curve(k: float) -> list[dict]:
        return [{"map": 8, "channels": 8, "macs": m, "seconds": k * rate * m * 4}
                for m in (1_000, 1_000_000, 1_000_000_000)]

    return {"version": 1, "kind": "device-profile", "overhead_s": overhead,
            "device": {"type": "cpu", "name": "test", "date": "2026-01-01", "torch": "x"},
            "setting": {"precision": "fp32", "channels_last": False, "batch": 4},
            "blocks": {"stem": curve(1.0), "basic": curve(1.0), "aa:relative": curve(3.0),
                       "aa:linear": curve(2.0)},
            "memory": {"device_bytes": 80 * 2**30, "context_bytes": 2**29,
                       "peak_over_estimate": 1.2}}


def test_curve_interpolates_log_log_and_extends_linearly_and_by_the_first_slope():
    points = [{"macs": 10, "seconds": 1.0}, {"macs": 1000, "seconds": 10.0}]
    assert curve_seconds(points, 10 * 2, batch=2) == pytest.approx(1.0)
    assert curve_seconds(points, 100 * 2, batch=2) == pytest.approx(10 ** 0.5)  # log-log mid
    assert curve_seconds(points, 4000 * 2, batch=2) == pytest.approx(40.0)  # linear beyond
    # Below: the first segment's slope (0.5 in log-log).
    assert curve_seconds(points, 0.1 * 2, batch=2) == pytest.approx(0.1)
    flat = [{"macs": 10, "seconds": 2.0}, {"macs": 1000, "seconds": 1.0}]  # noisy: slope < 0
    assert curve_seconds(flat, 1 * 2, batch=2) == pytest.approx(2.0)
    steep = [{"macs": 10, "seconds": 1.0}, {"macs": 20, "seconds": 8.0}]  # slope 3 -> 1
    assert curve_seconds(steep, 5 * 2, batch=2) == pytest.approx(0.5)


def test_prediction_sums_overhead_stem_and_each_block_on_its_own_curve():
    profile = linear_profile()
    spec = load_zoo("aa-resnet18-cifar")
    graph = spec.graph(costs=True)
    expected = 0.01
    for name, node in graph.nodes(data=True):
        if name == "stem":
            expected += 1e-9 * node["macs"] * 16
        elif node["type"] == "basic":
            expected += 1e-9 * node["macs"] * 16
        elif node["type"] == "aa":
            k = 3.0 if node["cfg"].get("attention", "relative") == "relative" else 2.0
            expected += k * 1e-9 * node["macs"] * 16
    got = predict_step_s(spec, profile, batch=16)
    assert got["step_s"] == pytest.approx(expected, rel=1e-6)
    assert got["overhead_s"] == 0.01 and got["blocks_s"] > got["stem_s"] > 0
    largest = max(node["macs"] for _, node in graph.nodes(data=True)) * 16
    assert got["beyond_measured_x"] == pytest.approx(max(1.0, largest / (1e9 * 4)))
    small = dict(profile, blocks={k: [dict(p, macs=p["macs"] // 1000) for p in v]
                                  for k, v in profile["blocks"].items()})
    assert predict_step_s(spec, small, batch=16)["beyond_measured_x"] > 4


def test_block_key_prefers_the_attention_curve_and_names_a_missing_type():
    profile = linear_profile()
    assert block_key({"type": "aa", "cfg": {"attention": "linear"}}, profile) == "aa:linear"
    assert block_key({"type": "aa", "cfg": {"attention": "local"}}, profile) in (
        "aa:linear", "aa:relative")  # unmeasured kernel: a curve of the same block
    assert block_key({"type": "basic", "cfg": {}}, profile) == "basic"
    with pytest.raises(UserError, match="no measurements of block type 'eaa'"):
        block_key({"type": "eaa", "cfg": {}}, profile)


def test_measured_profile_records_device_versions_curves_and_memory(measured):
    raw = yaml.safe_load(measured.read_text())
    assert raw["device"]["type"] == "cpu" and raw["device"]["name"]
    assert raw["device"]["torch"] and raw["device"]["date"].startswith("20")
    assert {"stem", "basic", "bottleneck", "aa:relative", "eaa:local"} <= set(raw["blocks"])
    assert all(p["seconds"] > 0 and p["macs"] > 0 for pts in raw["blocks"].values()
               for p in pts)
    mem = raw["memory"]
    assert mem["device_bytes"] > 2**30 and mem["peak_over_estimate"] > 0
    profile = load_profile(measured)
    step = predict_step_s(load_zoo("resnet18-cifar"), profile, batch=8)["step_s"]
    assert step > profile["overhead_s"] > 0


def _partial_of(measured: Path, tmp_path: Path, keep: int) -> tuple[Path, dict]:
    """A copy of the measured profile as a stopped measurement leaves it: the first
    ``keep`` curves, no memory rule, ``complete: false``."""
    raw = yaml.safe_load(measured.read_text())
    curves = list(raw["blocks"])
    partial = {k: v for k, v in raw.items() if k != "memory"}
    partial.update(complete=False, curves=curves,
                   blocks={k: raw["blocks"][k] for k in curves[:keep]})
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(partial, sort_keys=False))
    return path, partial


def test_a_stopped_profile_is_continued_not_remeasured(measured, tmp_path):
    path, partial = _partial_of(measured, tmp_path, keep=5)
    with pytest.raises(UserError, match="a partial profile .*finish it on its device"):
        load_profile(path)  # never priced from half a profile
    r = nas("profile-device", "--device", "cpu", "--quick", "--batch", "2", "--out", str(path))
    assert r.returncode == 0, r.stderr
    n = len(partial["curves"])
    assert f"continuing: 5 of {n} curves measured before" in r.stderr
    done = yaml.safe_load(path.read_text())
    assert done["complete"] is True and done["memory"]["peak_over_estimate"] > 0
    assert set(done["blocks"]) == set(partial["curves"])
    for key, points in partial["blocks"].items():  # kept as measured, to the digit
        assert done["blocks"][key] == points
    assert done["overhead_s"] == partial["overhead_s"]
    load_profile(path)


def test_a_partial_profile_of_another_setting_is_not_mixed_in(measured, tmp_path):
    path, _ = _partial_of(measured, tmp_path, keep=3)
    before = path.read_text()
    r = nas("profile-device", "--device", "cpu", "--quick", "--batch", "3", "--out", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "measured with batch 2, this run's is 3" in r.stderr
    assert path.read_text() == before  # nothing saved is lost


def test_a_shipped_profile_is_found_by_name_from_any_directory(tmp_path):
    assert "cpu-1thread" in list_profiles()
    profile = load_profile("cpu-1thread")
    assert profile["device"]["type"] == "cpu" and profile["blocks"]
    r = nas("search", "digits", "--dry-run", "--device-profile", "cpu-1thread",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cpu-1thread" in r.stdout


def test_a_bad_profile_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: something-else\n")
    r = nas("search", "cifar10-eaanet", "--dry-run", "--device-profile", str(bad))
    assert r.returncode == 2
    assert "not a device profile" in r.stderr and "Traceback" not in r.stderr
    r = nas("search", "cifar10-eaanet", "--dry-run", "--device-profile", "no-such-gpu")
    assert r.returncode == 2 and "no such file and no shipped profile" in r.stderr
    profile = linear_profile()
    del profile["memory"]
    bad.write_text(profile_yaml(profile))
    with pytest.raises(UserError, match="missing 'memory'"):
        load_profile(bad)


def test_gpu_study_without_gpu_or_profile_is_not_priced_from_the_cpu():
    r = nas("search", "cifar10-eaanet", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["measurement"] is None and plan["expected_trials"] is None
    assert plan["profile"] is None
    assert any("not priced" in w and "nas profile-device" in w for w in plan["warnings"])


def test_dry_run_prices_a_gpu_study_from_a_profile(measured, tmp_path):
    # A CPU profile prices CIFAR-10 trials at hours each: a large budget pays for some.
    r = nas("search", "cifar10-eaanet", "--dry-run", "--json", "--device-profile",
            str(measured), "--budget", "100000gpuh")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    m = plan["measurement"]
    assert m["source"] == "device profile" and plan["profile"]["path"] == str(measured)
    study = load_study("cifar10-eaanet")
    spec = next(s for s in sample_specs(study, SAMPLES) if s.name == m["spec"])
    assert m["step_s"] == pytest.approx(
        predict_step_s(spec, load_profile(measured), study.training.batch_size)["step_s"])
    t = plan["trial"]
    # the mean trial is priced at the mean predicted step of every feasible candidate
    feasible = [c.spec for c in sample_candidates(study, n=SAMPLES, seed=0) if c.feasible]
    steps = [predict_step_s(s, load_profile(measured), study.training.batch_size)["step_s"]
             for s in feasible]
    assert t["steps_priced"] == len(feasible) > 1
    assert t["step_s"] == pytest.approx(sum(steps) / len(steps))
    assert plan["expected_trials"] == int(100000 * 3600 / t["expected_device_s"])
    assert any("profile is of a CPU" in w for w in plan["warnings"])
    text = nas("search", "cifar10-eaanet", "--dry-run", "--device-profile", str(measured))
    assert f"priced    with device profile {measured}" in text.stdout

    # The same profile named in the study itself.
    raw = study.to_dict()
    raw["resources"]["device_profile"] = str(measured)
    assert make_plan(raw)["measurement"]["source"] == "device profile"


def test_auto_gpus_from_a_gpu_profiles_memory_rule(measured):
    from nas.evaluate.cluster import trials_per_gpu_for

    gpu = copy.deepcopy(load_profile(measured))
    gpu["device"]["type"] = "cuda"
    gpu["memory"].update(device_bytes=80 * 2**30, context_bytes=2**29, peak_over_estimate=0.5)
    path = Path(measured).with_name("gpu.yaml")
    path.write_text(profile_yaml(gpu))
    plan = make_plan("cifar10-eaanet", device_profile=str(path))
    res = plan["resources"]["per_trial"]
    largest = max(c["train_memory_mb"] for c in plan["space"]["candidates"]
                  if not c["violations"])
    per_gpu = trials_per_gpu_for(largest * 2**20 * 0.5, 80 * 2**30, context_bytes=2**29)
    assert res["trials_per_gpu"] == per_gpu and res["gpu"] == pytest.approx(1 / per_gpu,
                                                                            abs=1e-4)
    assert not any("profile is of a CPU" in w for w in plan["warnings"])


def test_device_profile_only_with_dry_run():
    r = nas("search", "digits", "--device-profile", "x.yaml")
    assert r.returncode == 2 and "only used with --dry-run" in r.stderr


def test_ctrl_c_keeps_the_measured_curves_and_says_how_to_go_on(tmp_path):
    out = tmp_path / "cpu.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "profile-device", "--device",
                             "cpu", "--batch", "2", "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the full CPU grid: a curve takes seconds
        if " points, " in line:
            break
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "curves kept in" in err and "the same command continues" in err
    assert "Traceback" not in err
    partial = yaml.safe_load(out.read_text())
    assert partial["complete"] is False and len(partial["blocks"]) >= 2
    assert {"stem"} < set(partial["blocks"]) < set(partial["curves"])
