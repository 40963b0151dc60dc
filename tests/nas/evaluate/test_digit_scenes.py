"""nas.evaluate.digit_scenes and the ``digit-scenes`` dataset: deterministic composition from the
bundled digits, correct labels, balanced classes, held-out source digits for validation,
and the same loading path (study schema, load_data, TensorData, the CLI) as every
other dataset."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_digits

from nas.errors import UserError
from nas.evaluate.data import TensorData, load_data, split_indices
from nas.evaluate.digit_scenes import ScenesConfig, compose
from nas.study import DataConfig, load_study, packaged_studies


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.images.astype(np.float32), d.target


def _windows(canvas: np.ndarray) -> np.ndarray:
    """Every 8x8 window of one canvas, (positions, 64)."""
    t = torch.from_numpy(canvas)[None, None]
    return torch.nn.functional.unfold(t, 8)[0].T.numpy()


def _matches(canvas: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(window position, source index) pairs where a source image appears pixel for
    pixel on the canvas."""
    flat = images.reshape(len(images), 64)
    hits = (np.abs(_windows(canvas)[:, None, :] - flat[None]) < 1e-6).all(2)
    return np.nonzero(hits & flat.any(1))


def _copies(canvas: np.ndarray, images: np.ndarray) -> set[int]:
    """Indices of the source images that appear, pixel for pixel, somewhere on canvas."""
    return set(_matches(canvas, images)[1].tolist())


def test_same_seed_same_images_other_seed_other_images(source):
    cfg = ScenesConfig(train=50, val=20)
    x1, y1 = compose(*source, 60, cfg, salt=0)
    x2, y2 = compose(*source, 60, cfg, salt=0)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    x3, _ = compose(*source, 60, replace(cfg, seed=1), salt=0)
    x4, _ = compose(*source, 60, cfg, salt=1)  # the validation stream of the same seed
    assert not np.array_equal(x1, x3) and not np.array_equal(x1, x4)


@pytest.mark.parametrize("task", ["cluttered", "pair-sum"])
def test_shapes_range_and_balanced_labels(source, task):
    cfg = ScenesConfig(task=task, size=40, digit_scale=1 if task == "pair-sum" else 2)
    x, y = compose(*source, 103, cfg, salt=0)
    assert x.shape == (103, 40, 40) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 16 and x.max() > 10  # digits' 0..16 range
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1  # 103 images: 3 classes get 11, 7 get 10


def test_cluttered_label_is_the_digit_drawn(source):
    """Native-size digit, no clutter: each canvas holds an exact copy of a source image
    of its label's class and of no other class."""
    images, labels = source
    cfg = ScenesConfig(task="cluttered", digit_scale=1, clutter=0)
    x, y = compose(images[:300], labels[:300], 40, cfg, salt=0)
    for canvas, label in zip(x, y, strict=True):
        found = _copies(canvas, images[:300])
        assert found and {int(labels[i]) for i in found} == {int(label)}


def test_pair_sum_label_is_the_sum_mod_10_of_two_distant_digits(source):
    images, labels = source
    cfg = ScenesConfig(task="pair-sum", digit_scale=1, min_distance=16)
    x, y = compose(images[:300], labels[:300], 40, cfg, salt=0)
    for canvas, label in zip(x, y, strict=True):
        where, which = _matches(canvas, images[:300])
        assert len(set(where.tolist())) == 2, where  # two digits at two places
        first, second = (np.array(divmod(int(w), 32 - 7)) for w in sorted(set(where)))
        assert np.hypot(*(first - second)) >= 16
        pair = {int(w): int(labels[i]) for w, i in zip(where, which, strict=True)}
        assert sum(pair.values()) % 10 == label


def test_loads_through_load_data_as_tensor_data():
    cfg = DataConfig(dataset="digit-scenes", augment="standard",
                     scenes=ScenesConfig(train=300, val=200))
    b = load_data(cfg)
    assert isinstance(b.train, TensorData) and isinstance(b.val, TensorData)
    assert (b.channels, b.size, b.classes) == (1, (32, 32), 10)
    assert (len(b.train), len(b.val)) == (300, 200)
    assert b.train.augment and not b.val.augment  # the same augmentation option
    assert b.train.x.dtype == torch.uint8
    assert torch.bincount(b.val.y, minlength=10).tolist() == [20] * 10
    xb, yb = next(b.train.batches(64, shuffle=True, generator=torch.Generator()))
    assert xb.shape == (64, 1, 32, 32) and abs(float(xb.mean())) < 0.5  # normalised
    again = load_data(cfg)
    assert torch.equal(again.train.x, b.train.x) and torch.equal(again.val.y, b.val.y)
    other = load_data(replace(cfg, scenes=replace(cfg.scenes, seed=1)))
    assert not torch.equal(other.train.x, b.train.x)
    assert len(load_data(replace(cfg, subset=100)).train) == 100


def test_validation_uses_only_held_out_source_digits(source):
    """Native-size, clutter-free scenes: every digit found on a validation canvas is one
    of the source digits split_indices holds out, and none on a training canvas is."""
    images, _ = source
    cfg = DataConfig(dataset="digit-scenes", val_fraction=0.2, split_seed=3,
                     scenes=ScenesConfig(train=40, val=40, digit_scale=1, clutter=0))
    b = load_data(cfg)
    _, held_out = split_indices(len(images), 0.2, 3)
    held = set(held_out.tolist())
    for split, want in ((b.val, True), (b.train, False)):
        for canvas in (split.x[:, 0].float().numpy() * 16 / 255):
            found = _copies(np.rint(canvas * 255 / 16) * 16 / 255, np.rint(
                images * 255 / 16) * 16 / 255)
            assert found and all((i in held) == want for i in found)


def test_schema_rejects_misplaced_or_impossible_scenes():
    with pytest.raises(UserError, match=r"study.data.scenes: only allowed with dataset"):
        load_data({"dataset": "digits", "scenes": {"task": "cluttered"}})
    with pytest.raises(UserError,
                       match=r"study.data.scenes.task: 'sum' .*allowed: cluttered, pair-sum"):
        load_data({"dataset": "digit-scenes", "scenes": {"task": "sum"}})
    with pytest.raises(UserError, match=r"digit_scale: digits of 48px do not fit"):
        load_data({"dataset": "digit-scenes", "scenes": {"digit_scale": 6}})
    with pytest.raises(UserError, match=r"min_distance"):
        load_data({"dataset": "digit-scenes",
                   "scenes": {"task": "pair-sum", "min_distance": 40}})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_packaged_study_dry_run_through_the_cli():
    assert "digit-scenes" in packaged_studies()
    study = load_study("digit-scenes")
    assert study.input_size == (32, 32) and study.data.scenes.val >= 2000
    run = _cli("search", "digit-scenes", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "digit-scenes" in run.stdout and "8000 train / 2000 val" in run.stdout


def test_cli_names_a_bad_scenes_field(tmp_path):
    raw = yaml.safe_load(load_study("digit-scenes").to_yaml())
    raw["data"]["scenes"]["clutter_size"] = 99
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    run = _cli("search", str(bad), "--dry-run")
    assert run.returncode == 2
    lines = [line for line in run.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "study.data.scenes.clutter_size" in lines[0]
    assert "Traceback" not in run.stderr
