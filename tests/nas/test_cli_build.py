"""`nas build` and `nas show`: numbers that match the built module, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nas.cli import main
from search_space import load_spec

SPEC = {
    "version": 1, "name": "cli-tiny", "input": {"channels": 3, "size": [12, 12]}, "classes": 5,
    "stem": {"channels": 8, "pool": "max"},
    "stages": [
        {"channels": 8, "blocks": [{"type": "basic"}, {"type": "basic"}]},
        {"channels": 16, "stride": 2, "blocks": [{"type": "aa", "kappa": 0.5, "upsilon": 0.5,
                                                  "heads": 2}]},
    ],
}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_json_matches_the_built_model(capsys, spec_file):
    code, out, _ = run(capsys, "build", str(spec_file), "--json")
    assert code == 0
    info = json.loads(out)  # exactly one JSON object
    spec = load_spec(spec_file)
    model = spec.build().eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 12, 12))
    assert info["name"] == "cli-tiny"
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["output_shape"] == list(logits.shape)
    assert info["hash"] == spec.hash()
    assert info["blocks_by_type"] == {"aa": 1, "basic": 2}
    assert info["feature_shape"] == [1, 16, 3, 3]  # 12 -pool-> 6 -stride 2-> 3
    graph_macs = sum(d["macs"] for _, d in spec.graph().nodes(data=True))
    assert info["macs"] == graph_macs > 0


def test_build_batch_scales_macs(capsys, spec_file):
    one = json.loads(run(capsys, "build", str(spec_file), "--json")[1])
    four = json.loads(run(capsys, "build", str(spec_file), "--json", "--batch", "4")[1])
    assert four["macs"] == 4 * one["macs"]
    assert four["params"] == one["params"]
    assert four["output_shape"] == [4, 5]


def test_build_text(capsys, spec_file):
    code, out, _ = run(capsys, "build", str(spec_file))
    params = sum(p.numel() for p in load_spec(spec_file).build().parameters())
    assert code == 0
    assert f"{params:,}" in out
    assert "aa x1, basic x2" in out
    assert load_spec(spec_file).hash() in out


def test_show_table_has_every_node(capsys, spec_file):
    code, out, _ = run(capsys, "show", str(spec_file))
    assert code == 0
    lines = out.splitlines()
    for node in ("input", "stem", "s0.b0", "s0.b1", "s1.b0", "head", "output", "total"):
        assert any(line.split()[0] == node for line in lines if line.strip()), node
    s1b0 = next(line for line in lines if line.startswith("s1.b0"))
    assert "aa" in s1b0 and "16x3x3" in s1b0


def test_show_json_sums_to_the_model(capsys, spec_file):
    rows = json.loads(run(capsys, "show", str(spec_file), "--json")[1])
    model = load_spec(spec_file).build()
    assert [r["node"] for r in rows] == ["input", "stem", "s0.b0", "s0.b1", "s1.b0", "head",
                                         "output"]
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert rows[-2]["params"] == sum(p.numel() for p in model.head.parameters())


def test_zoo_name_works_as_spec(capsys):
    from search_space.zoo import list_zoo

    name = "resnet18-cifar" if "resnet18-cifar" in list_zoo() else list_zoo()[0]
    code, out, _ = run(capsys, "build", f"zoo:{name}", "--json")
    assert code == 0 and json.loads(out)["name"] == name


@pytest.mark.parametrize("content, words", [
    (None, "no such spec file"),
    ("version: 1\nname: [oops\n", "invalid YAML"),
    (yaml.safe_dump({**SPEC, "version": 3}), "version: 3 is not supported"),
    (yaml.safe_dump({**SPEC, "stages": [{"channels": 8, "blocks": [
        {"type": "aa", "dk": 4, "dv": 4, "heads": 3}]}]}),
     "stages[0].blocks[0].heads: 3 does not divide"),
])
@pytest.mark.parametrize("verb", ["build", "show"])
def test_errors_are_one_line(capsys, tmp_path, verb, content, words):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, verb, str(path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"nas {verb}: error: ") and words in err


def test_subprocess(spec_file):
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "build", str(spec_file), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hash"] == load_spec(spec_file).hash()
    bad = subprocess.run([sys.executable, "-m", "nas.cli", "show", "zoo:no-such-model"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "no-such-model" in bad.stderr
