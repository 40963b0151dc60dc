"""The arithmetic baseline_separation.py reports with (pooled seed std, best-worst
spread, its ratio) and the tags scenes_space_constraints.py counts candidates by, on
small inputs whose answers are worked out by hand. No training, no timings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import baseline_separation as bs  # noqa: E402
import scenes_space_constraints as sc  # noqa: E402

from search_space import ModelSpec  # noqa: E402


def test_pooled_std_is_the_root_mean_within_model_variance():
    # variances 0.01 (0.8, 0.9, 1.0) and 0.0004 (0.5, 0.52, 0.54): mean 0.0052
    assert bs.pooled_std([[0.8, 0.9, 1.0], [0.5, 0.52, 0.54]]) == pytest.approx(0.0052 ** 0.5)


def test_summary_spread_and_ratio_over_models():
    rows = [{"model": m, "seed": s, "accuracy": a} for m, s, a in [
        ("a", 1, 0.9), ("a", 0, 0.8), ("a", 2, 1.0),
        ("b", 0, 0.5), ("b", 1, 0.52), ("b", 2, 0.54),
        ("c", 0, None)]]  # a failed run is left out, not counted as 0
    out = bs.summarise(rows, ["a", "b", "c"])
    assert set(out["per_model"]) == {"a", "b"}
    assert out["per_model"]["a"]["per_seed"] == [0.8, 0.9, 1.0]  # seed order
    assert out["spread_best_worst"] == pytest.approx(0.9 - 0.52)
    assert out["spread_over_pooled_std"] == pytest.approx(0.38 / 0.0052 ** 0.5)


def test_tags_name_the_attention_kind_and_its_map_side():
    spec = ModelSpec.from_dict({
        "version": 1, "name": "t", "input": {"channels": 1, "size": [32, 32]},
        "classes": 10, "stem": {"kind": "conv", "channels": 8, "kernel": 3, "stride": 1},
        "stages": [
            {"channels": 8, "stride": 1, "blocks": [
                {"type": "aa", "attention": "full", "heads": 2}]},
            {"channels": 16, "stride": 2, "blocks": [
                {"type": "eaa", "attention": "linformer", "heads": 2}, {"type": "basic"}]},
            {"channels": 32, "stride": 2, "blocks": [{"type": "cvt", "heads": 2}]}]})
    assert sc.tags(spec) == {"aa:full@32", "eaa:linformer@16", "basic@16", "cvt@8"}


def _separation_file(path: Path, training: dict, runs: list[tuple]) -> Path:
    import json

    path.write_text(json.dumps({"training": training, "tasks": {"study": {"runs": [
        {"model": m, "seed": s, "accuracy": a} for m, s, a in runs]}}}))
    return path


def test_attention_kinds_reads_accuracies_of_one_proxy_only(tmp_path):
    import attention_kinds as ak

    proxy = {"epochs": 2, "batch_size": 64, "compile": False}
    a = _separation_file(tmp_path / "a.json", {"epochs": 2, "batch_size": 64},
                         [("aa-resnet-scenes", 0, 0.6), ("resnet-scenes", 0, 0.7),
                          ("aa-full-scenes", 1, None)])
    b = _separation_file(tmp_path / "b.json", proxy,  # compile: False == absent
                         [("aa-full-scenes", 0, 0.5), ("aa-resnet-scenes", 0, 0.65)])
    found = ak.accuracies([a, b])
    assert found == {"aa-resnet-scenes": {0: 0.65}, "aa-full-scenes": {0: 0.5}}
    c = _separation_file(tmp_path / "c.json", {**proxy, "epochs": 40}, [])
    with pytest.raises(SystemExit, match="another proxy"):
        ak.accuracies([a, c])


def test_attention_kind_variants_change_only_the_kind():
    import attention_kinds as ak

    from search_space import load_spec

    def spec(name: str) -> dict:
        return load_spec(ak.NETWORKS[name][2]).to_dict()

    def body(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("name", "meta")}

    base = spec("aa-resnet-scenes")
    for kind in ("full", "linear"):
        variant = spec(f"aa-{kind}-scenes")
        assert variant["name"] == f"aa-{kind}-scenes"
        assert body(variant) == body(_with_attention(base, "relative", kind))
    # the *32 networks: the same, with the 32x32 stage's one block attending too
    for kind in ("relative", "full", "linear"):
        variant, expected = spec(f"aa-{kind}32-scenes"), _with_attention(base, "relative", kind)
        expected["stages"][0]["blocks"] = [expected["stages"][1]["blocks"][0]]
        assert ak.NETWORKS[f"aa-{kind}32-scenes"][1] == "32, 16, 8"
        assert body(variant) == body(expected)
    linformer = spec("eaanet-linformer-scenes")
    linformer["stages"][0]["blocks"] = [linformer["stages"][1]["blocks"][0]]
    assert body(spec("eaanet-linformer32-scenes")) == body(linformer)


def _with_attention(spec: dict, old: str, new: str) -> dict:
    import json

    return json.loads(json.dumps(spec).replace(f'"attention": "{old}"',
                                               f'"attention": "{new}"'))


def test_training_override_is_the_proxy_recorded_and_a_bad_key_is_one_line(tmp_path):
    """``--training`` trains under another proxy (here nothing is trained: --no-train);
    what it ran under is the report's ``training``, numbers typed as numbers."""
    import json
    import subprocess

    script = Path(bs.__file__)
    out = tmp_path / "sep.json"
    run = subprocess.run([sys.executable, str(script), "--no-train", "--models",
                          "resnet-scenes", "--training", "optimizer=sgd,lr=5e-2,warmup_epochs=0",
                          "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    training = report["training"]
    assert report["training_override"] == "optimizer=sgd,lr=5e-2,warmup_epochs=0"
    assert (training["optimizer"], training["lr"], training["warmup_epochs"]) == ("sgd", 0.05, 0)
    bad = subprocess.run([sys.executable, str(script), "--no-train", "--training",
                          "optimiser=sgd", "--out", str(tmp_path / "bad.json")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "'optimiser' is not a training key" in bad.stderr
    assert not (tmp_path / "bad.json").exists()
