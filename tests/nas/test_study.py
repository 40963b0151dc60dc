"""nas.study: the packaged study, round trips, and bad study files naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from nas.errors import UserError
from nas.study import Study, load_study, packaged_studies, parse_study


@pytest.fixture(scope="module")
def digits() -> Study:
    return load_study(None)


@pytest.fixture(scope="module")
def digits_raw() -> dict:
    from importlib import resources

    studies = resources.files("nas.studies")
    raw = yaml.safe_load((studies / "digits.yaml").read_text())
    # baseline paths are relative to the study file; the tests parse copies elsewhere
    raw["baselines"] = [str(studies / b) for b in raw.get("baselines", [])]
    return raw


def test_packaged_digits_study(digits):
    assert "digits" in packaged_studies()
    assert digits.name == "digits" and digits.data.dataset == "digits"
    assert (digits.input_channels, digits.input_size, digits.classes) == (1, (8, 8), 10)
    assert digits.primary.metric == "accuracy" and digits.primary.direction == "maximize"
    assert digits.constraints and digits.budget.kind == "device"
    assert digits.space.size() > 100
    assert load_study("digits") == digits


def test_to_dict_round_trips(digits, tmp_path):
    d = digits.to_dict()
    assert load_study(d) == digits
    path = tmp_path / "resolved.yaml"
    path.write_text(digits.to_yaml())
    again = load_study(path)
    assert again == digits and again.to_dict() == d


def test_study_pickles_without_its_parsed_space(digits):
    import pickle

    digits.space  # noqa: B018 - parse (and cache) it first
    again = pickle.loads(pickle.dumps(digits))
    assert again == digits and "_space" not in again.__dict__
    assert again.space.size() == digits.space.size()


def test_defaults_are_filled():
    s = parse_study({"name": "x", "space": _space()})
    d = s.to_dict()
    assert d["training"]["epochs"] == 4 and d["training"]["optimizer"] == "sgd"
    assert d["objectives"] == [{"metric": "accuracy", "direction": "maximize"}]
    assert d["fidelity"] == {"scheduler": "asha", "grace_epochs": 1, "reduction_factor": 2}
    assert d["constraints"] == {} and d["budget"] is None and d["baselines"] == []
    assert "synthetic" not in d["data"]


def _space(channels: int = 1, size: int = 8, classes: int = 10) -> dict:
    return {"input": {"channels": channels, "size": [size, size]}, "classes": classes,
            "stem": {"kind": "conv", "channels": 8},
            "stages": [{"channels": [8, 16], "depth": [1, 2], "stride": 1,
                        "blocks": ["basic", "aa"]}],
            "knobs": {"aa": {"heads": 2, "kappa": 0.5, "upsilon": 0.5}}}


def _set(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d.setdefault(k, {})
    if value is _DELETE:
        del d[keys[-1]]
    elif isinstance(d, list):
        d[int(keys[-1])] = value
    else:
        d[keys[-1]] = value


_DELETE = object()

MISTAKES = [
    ("training.epochs", -1, "study.training.epochs: -1 is not a positive int"),
    ("training.epochz", 3, "study.training.epochz: unknown key"),
    ("training.optimizer", "adam", "study.training.optimizer: 'adam' is not allowed; allowed: "
                                   "sgd, adamw"),
    ("objectives.1.metric", "speed", "study.objectives[1].metric: 'speed'"),
    ("constraints.accuracy", 0.9, "study.constraints.accuracy: unknown constraint"),
    ("constraints.params", -5, "study.constraints.params: -5 is not a positive number"),
    ("data.dataset", "mnist", "study.data.dataset: 'mnist' is not allowed"),
    ("data.val_fraction", 1.5, "study.data.val_fraction: 1.5"),
    ("version", 2, "study.version: 2 is not supported"),
    ("name", _DELETE, "study.name: is required"),
    ("sampler.name", "cmaes", "study.sampler.name: 'cmaes'"),
    ("fidelity.grace_epochs", 99, "study.fidelity.grace_epochs: 99 is more than"),
    ("resources.gpus_per_trial", -1, "study.resources.gpus_per_trial"),
    ("measure.repeats", 0, "study.measure.repeats: 0 is not a positive int"),
    ("budget", [1], "study.budget"),
    ("budget", "10parsecs", "study.budget: '10parsecs'"),
    ("baselines", ["no/such/spec.yaml"], "study.baselines[0]: no such spec file"),
    ("space.stages.0.blocks", ["basic", "nonesuch"], "study.space.stages[0].blocks"),
    ("space.input.channels", 3, "study.space: input 3x8x8 with 10 classes does not match "
                                "study.data.dataset 'digits' which gives 1x8x8"),
    ("space.classes", 100, "does not match study.data.dataset 'digits'"),
]


@pytest.mark.parametrize(("field", "value", "expected"), MISTAKES,
                         ids=[m[0] for m in MISTAKES])
def test_bad_study_file_names_the_field(digits_raw, tmp_path, field, value, expected):
    raw = copy.deepcopy(digits_raw)
    _set(raw, field, value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as err:
        load_study(path)
    text = str(err.value)
    assert expected in text
    assert "\n" not in text


def test_asha_needs_accuracy_first(digits_raw):
    raw = copy.deepcopy(digits_raw)
    raw["objectives"] = raw["objectives"][::-1]
    with pytest.raises(UserError, match=r"study.fidelity.scheduler: asha .* accuracy"):
        parse_study(raw)
    raw["fidelity"] = {"scheduler": "none"}
    assert parse_study(raw).primary.metric == "latency_ms"


def test_exponent_without_sign_is_a_number(tmp_path, digits_raw):
    """PyYAML reads 2.0e6 (no exponent sign) as a string; the study means a number."""
    raw = copy.deepcopy(digits_raw)
    raw["constraints"] = {}
    text = yaml.safe_dump(raw) + "\n"
    text = text.replace("constraints: {}", "constraints: {params: 2.0e6, macs: 1e8}")
    (tmp_path / "s.yaml").write_text(text)
    assert load_study(tmp_path / "s.yaml").constraints == {"params": 2_000_000,
                                                           "macs": 100_000_000}
    raw["constraints"] = {"params": "lots"}
    with pytest.raises(UserError, match="study.constraints.params: 'lots' is not a positive"):
        parse_study(raw)


def test_gpus_per_trial_takes_fractions_and_auto(digits_raw):
    raw = copy.deepcopy(digits_raw)
    for value in (0, 0.25, 1, 2, "auto"):
        raw["resources"] = {"gpus_per_trial": value}
        assert parse_study(raw).resources.gpus_per_trial == value
    raw["resources"] = {"gpus_per_trial": "many"}
    with pytest.raises(UserError, match="study.resources.gpus_per_trial: 'many'"):
        parse_study(raw)


def test_synthetic_section_only_with_synthetic_dataset():
    with pytest.raises(UserError, match="study.data.synthetic: only allowed"):
        parse_study({"name": "x", "space": _space(),
                     "data": {"dataset": "digits", "synthetic": {"classes": 10}}})
    s = parse_study({"name": "x", "space": _space(channels=2, size=4, classes=3), "data": {
        "dataset": "synthetic", "synthetic": {"channels": 2, "size": [4, 4], "classes": 3}}})
    assert s.data.synthetic.size == (4, 4)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nspace: {input: [\n")
    with pytest.raises(UserError, match="broken.yaml line .* is not valid YAML"):
        load_study(bad)
    with pytest.raises(UserError, match="no such file 'nope.yaml'.*packaged studies: .*digits"):
        load_study("nope.yaml")
    with pytest.raises(UserError, match="^study: expected a mapping, got a list"):
        parse_study(["a", "list"])


def test_baseline_paths_resolve_against_the_study_folder(digits_raw, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.yaml").write_text("version: 1\n")
    raw = copy.deepcopy(digits_raw)
    raw["baselines"] = ["specs/mine.yaml"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    s = load_study(tmp_path / "study.yaml")
    assert s.baselines == (str((tmp_path / "specs" / "mine.yaml").resolve()),)
    # the resolved form needs no study folder any more (resume reads only the run dir)
    assert load_study(s.to_dict()).baselines == s.baselines


def test_unknown_zoo_baseline_lists_known_names(digits_raw):
    zoo = pytest.importorskip("search_space.zoo")
    if not hasattr(zoo, "list_zoo") or not zoo.list_zoo():
        pytest.skip("the zoo is not populated yet")
    raw = copy.deepcopy(digits_raw)
    raw["baselines"] = ["zoo:no-such-net"]
    with pytest.raises(UserError, match=r"study.baselines\[0\]: unknown zoo model"):
        parse_study(raw)


def test_packaged_space_mixes_blocks_and_constraints_bind(digits):
    """The digits study samples conv AND attention blocks, and its constraints make
    some sampled candidates infeasible and leave others feasible (analytic checks)."""
    import optuna

    from nas.evaluate.checks import analytic, violations

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    types, feasible = set(), []
    for _ in range(30):
        spec = digits.space.sample(study.ask())
        types |= {b.type for st in spec.stages for b in st.blocks}
        values = analytic(spec, digits)
        feasible.append(not violations(
            {**values, "memory_mb": values["memory_est_mb"]}, digits.constraints))
    assert "basic" in types and len(types - {"basic"}) >= 3
    assert any(feasible) and not all(feasible)


def test_budget_is_parsed_once_on_the_study(digits_raw):
    """Study.budget is a parsed Budget; to_dict writes its text back; --budget replaces
    it with a clear one-line error."""
    from nas.budget import Budget

    raw = copy.deepcopy(digits_raw)
    raw["budget"] = " 2h "
    s = parse_study(raw)
    assert isinstance(s.budget, Budget)
    assert (s.budget.kind, s.budget.limit, s.budget.text) == ("wall", 7200.0, "2h")
    assert s.to_dict()["budget"] == "2h" and load_study(s.to_dict()) == s
    more = s.with_budget("30trials")
    assert (more.budget.kind, more.budget.limit) == ("trials", 30)
    assert more.to_dict()["budget"] == "30trials" and s.budget.text == "2h"  # s unchanged
    assert more.space is s.space  # the same space, not parsed again
    with pytest.raises(UserError, match=r"^--budget: '5 parsecs': unknown budget unit"):
        s.with_budget("5 parsecs")
    raw["budget"] = 20
    with pytest.raises(UserError, match=r"^study\.budget: '20' is not a budget"):
        parse_study(raw)


def test_study_errors_use_the_field_readers_messages():
    """One error style: the readers of search_space.fields, under the study's paths."""
    base = {"name": "x", "space": _space()}
    cases = [
        ({"training": {"compile": "yes"}},
         "study.training.compile: 'yes' is not allowed; allowed: true, false"),
        ({"measure": {"warmup": -1}}, "study.measure.warmup: -1 is not an int >= 0"),
        ({"data": {"dataset": "synthetic", "synthetic": {"classes": 1}}},
         "study.data.synthetic.classes: 1 is not an int >= 2"),
        ({"resources": {"device_profile": ""}},
         "study.resources.device_profile: '' is not a non-empty string"),
        ({"sampler": {"seed": -1}}, "study.sampler.seed: -1 is not a seed"),
        ({"training": {"milestones": [0.7, 0.2]}}, "study.training.milestones: [0.7, 0.2]"),
        ({"objectives": [{"metric": "accuracy"}]},
         "study.objectives[0].direction: is required"),
        ({"training": ["epochs"]}, "study.training: expected a mapping, got a list"),
    ]
    for extra, expected in cases:
        with pytest.raises(UserError) as err:
            parse_study({**base, **extra})
        assert str(err.value).startswith(expected), (extra, str(err.value))


def test_cli_dry_run_of_a_bad_study_is_one_line(tmp_path, capsys):
    from nas.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "space": _space(),
                                   "training": {"epochs": 0}}))
    assert main(["search", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "nas search: error: study.training.epochs: 0 is not a positive int"
