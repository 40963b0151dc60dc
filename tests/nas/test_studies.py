"""Every shipped study (studies/*.yaml) loads, its baselines adapt to its data, and the
specs its space proposes build and take a training step at the study's input shape.

Per study: three specs drawn with a seeded RandomSampler; the one with the fewest MACs
takes a REAL forward + backward + SGD step on a random batch of 2 images of the study's
shape on the CPU, the other two a forward + backward on the meta device (shapes and
autograd wiring without compute), so ImageNet-sized spaces stay cheap.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml

from nas.evaluate.candidates import price
from nas.search.driver import enqueue_baselines
from nas.study import load_study, packaged_studies
from search_space import ModelSpec, totals

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"
STUDY_FILES = sorted(STUDIES_DIR.glob("*.yaml"))
#: the studies that reproduce a paper (issue 6); each must be shipped.
PAPER_STUDIES = ("cifar10-eaanet", "cifar100-wrn-aa", "cifar100-atc", "imagenet-resnet50",
                 "tinyimagenet-wrn")


def test_every_paper_study_is_shipped_and_packaged():
    names = {p.stem for p in STUDY_FILES}
    assert set(PAPER_STUDIES) | {"digits"} <= names
    assert set(packaged_studies()) == names  # package data: `nas search NAME` finds them


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_study_loads_and_round_trips(path: Path):
    study = load_study(path)
    assert study.name == path.stem
    assert load_study(study.to_dict()) == study
    assert study.space.size() >= 2
    assert study.budget is not None
    assert study.baselines or path.stem == "digits"


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_paper_study_documents_what_where_and_cost(name: str):
    """The comment block says what it reproduces, the dataset and how to get it, and an
    expected cost per trial that is marked as an estimate."""
    text = (STUDIES_DIR / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "What it reproduces" in header
    assert "Dataset:" in header and "Nothing is downloaded" in header
    assert "Expected cost per trial" in header and "ESTIMATE" in header
    raw = yaml.safe_load(text)
    assert "Needs" in raw["description"] and "per trial" in raw["description"]


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_baselines_adapt_to_the_study_data_and_limits(path: Path):
    """`--with-baselines` enqueues each baseline at the study's input and classes; none
    may fail to build there (a failure is recorded as baseline_error), and none may break
    the study's analytic limits (a study must not rule out the papers' own networks)."""
    study = load_study(path)
    ostudy = optuna.create_study(directions=[o.direction for o in study.objectives])
    enqueue_baselines(ostudy, study)
    trials = ostudy.get_trials(deepcopy=False)
    assert len(trials) == len(study.baselines)
    for t in trials:
        attrs = t.user_attrs
        assert "baseline_error" not in attrs, attrs.get("baseline_error")
        assert attrs["spec"]["classes"] == study.classes
        assert tuple(attrs["spec"]["input"]["size"]) == study.input_size
        candidate = price(study, ModelSpec.from_dict(attrs["spec"]))
        assert candidate.feasible, (attrs["baseline"], candidate.violations)


def _sampled(study, n: int = 3, seed: int = 1):
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.space.sample(ostudy.ask()) for _ in range(n)]


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_sampled_specs_take_a_training_step(path: Path):
    study = load_study(path)
    specs = sorted(_sampled(study), key=lambda s: totals(s.graph())["macs"])
    shape = (2, study.input_channels, *study.input_size)
    labels = torch.tensor([0, study.classes - 1])

    for spec in specs[1:]:  # shapes and autograd wiring only
        with torch.device("meta"):
            model = spec.build()
            out = model(torch.randn(shape))
            F.cross_entropy(out, labels.to("meta")).backward()
        assert tuple(out.shape) == (2, study.classes)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    torch.manual_seed(0)
    model = specs[0].build()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(torch.randn(shape))
    assert tuple(out.shape) == (2, study.classes)
    loss = F.cross_entropy(out, labels)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    after = list(model.parameters())
    changed = sum(not torch.equal(b, p) for b, p in zip(before, after, strict=True))
    assert changed > len(before) // 2  # the step moved most tensors
