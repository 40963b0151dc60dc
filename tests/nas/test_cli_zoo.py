"""``nas zoo``: the baselines with their counts, as a table or a JSON list."""

from __future__ import annotations

import json
import subprocess
import sys

from nas.cli import main
from search_space.zoo import list_zoo

KEYS = {"name", "params", "reference_params", "source", "tolerance", "input", "classes"}


def test_json_lists_every_entry(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_zoo()
    for r in rows:
        assert KEYS <= set(r)
    by_name = {r["name"]: r for r in rows}
    r18 = by_name["resnet18-cifar"]
    assert (r18["params"], r18["reference_params"]) == (11_173_962, 11_173_962)
    assert r18["input"] == [3, 32, 32] and r18["classes"] == 10 and r18["tolerance"] == 0.01
    cvt = by_name["cvt-13"]
    assert cvt["reference_params"] - cvt["unmodelled_params"] == cvt["params"] == 19_997_096


def test_table_for_chosen_names(capsys):
    assert main(["zoo", "resnet18-cifar", "cvt-13"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "params", "reference", "diff"]
    row = next(line for line in out if line.startswith("resnet18-cifar"))
    assert row.split()[1:4] == ["11.174M", "11.174M", "+0.00%"]
    assert "kuangliu/pytorch-cifar" in row
    assert any("unmodelled" in line for line in out)  # cvt-13's cls token note


def test_unknown_name_is_one_line_listing_known_names(capsys):
    assert main(["zoo", "resnet-19"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown model 'resnet-19'" in err
    assert "resnet18-cifar" in err and "Traceback" not in err


def test_console_script_json():
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "zoo", "resnet50", "--json"],
                          capture_output=True, text=True, check=True)
    (row,) = json.loads(proc.stdout)
    assert row["name"] == "resnet50" and row["params"] == 25_557_032
    assert row["input"] == [3, 224, 224] and row["classes"] == 1000
