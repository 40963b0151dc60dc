"""Every zoo entry and specs sampled from every packaged study's space go through the
verbs a user types (``nas build``, ``nas show``) without an error or a traceback.

One subprocess per verb takes all the specs (both verbs accept several), so the
interpreter and torch start once per verb, not once per spec.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna

from nas.study import load_study, packaged_studies
from search_space.zoo import list_zoo

SAMPLES_PER_STUDY = 2


def nas(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True,
                          text=True, timeout=900)


def check_verbs(specs: list[str], names: list[str]) -> None:
    build = nas("build", *specs, "--json")
    assert build.returncode == 0 and "Traceback" not in build.stderr, build.stderr[-3000:]
    rows = [json.loads(line) for line in build.stdout.splitlines()]
    assert [r["name"] for r in rows] == names
    for r in rows:  # the cost model ran (its training-memory count included)
        assert r["cost_source"] == "search_space.cost.estimate", r["name"]
        assert r["cost"]["activation_bytes"] > 0 and r["params"] > 0, r["name"]
    show = nas("show", *specs, "--json")
    assert show.returncode == 0 and "Traceback" not in show.stderr, show.stderr[-3000:]
    tables = [json.loads(line) for line in show.stdout.splitlines()]
    assert len(tables) == len(specs)
    for r, nodes in zip(rows, tables, strict=True):  # show and build agree per spec
        assert sum(n["params"] for n in nodes) == r["params"], r["name"]


def test_every_zoo_entry_builds_and_shows_through_the_cli():
    names = list_zoo()
    check_verbs([f"zoo:{n}" for n in names], names)


def test_specs_sampled_from_every_packaged_study_build_and_show(tmp_path: Path):
    paths, names = [], []
    for study in packaged_studies():
        space = load_study(study).space
        opt = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for k in range(SAMPLES_PER_STUDY):
            spec = space.sample(opt.ask())
            path = tmp_path / f"{study}-{k}.yaml"
            spec.save(path)
            paths.append(str(path))
            names.append(spec.name)
    check_verbs(paths, names)
