"""nas.evaluate.data: the fixed split, normalisation, batching, augmentation and the loaders."""

from __future__ import annotations

import pytest
import torch

from nas.errors import UserError
from nas.evaluate.data import (
    CROP_PAD,
    DataBundle,
    TensorData,
    batches,
    cached_data,
    crop_flip,
    load_data,
    split_indices,
    synthetic_tensors,
)
from nas.study import DataConfig, SyntheticConfig


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_data(DataConfig(dataset="digits", val_fraction=0.2, split_seed=0))


def _all(data, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches(data, 100, **kw), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_digits_shape_and_split(digits):
    assert (digits.channels, digits.size, digits.classes) == (1, (8, 8), 10)
    assert len(digits.val) == round(1797 * 0.2) and len(digits.train) == 1797 - 359
    x, y = _all(digits.train)
    assert x.shape == (1438, 1, 8, 8) and x.dtype == torch.float32
    assert set(y.tolist()) == set(range(10))


def test_train_split_is_normalised_with_train_statistics(digits):
    x, _ = _all(digits.train)
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1.0) < 1e-3
    # Raw digits are 0..16 scaled to [0, 1]: the largest normalised value is (1 - m) / s.
    mean, std = float(digits.train.mean), float(digits.train.std)
    assert float(x.max()) == pytest.approx((1.0 - mean) / std, rel=1e-5)
    xv, _ = _all(digits.val)  # the same statistics, not the validation set's own
    assert float(xv.min()) == pytest.approx(-mean / std, rel=1e-5)


def test_split_is_a_fixed_disjoint_partition():
    train, val = split_indices(100, 0.25, seed=3)
    assert len(val) == 25 and len(train) == 75
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again_train, again_val = split_indices(100, 0.25, seed=3)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    _, other = split_indices(100, 0.25, seed=4)
    assert not torch.equal(val, other)


def test_split_seed_changes_the_validation_examples():
    a = load_data(DataConfig(split_seed=0))
    b = load_data(DataConfig(split_seed=1))
    assert not torch.equal(_all(a.val)[0], _all(b.val)[0])
    c = load_data(DataConfig(split_seed=0))
    assert torch.equal(_all(a.val)[0], _all(c.val)[0])


def test_subset_limits_training_examples_only():
    b = load_data(DataConfig(subset=100))
    assert len(b.train) == 100 and len(b.val) == 359


def test_batches_without_shuffle_cover_every_example_once(digits):
    sizes = [len(y) for _, y in batches(digits.val, 64)]
    assert sizes == [64] * 5 + [359 - 320]


def test_shuffled_batches_drop_last_and_repeat_with_the_same_generator(digits):
    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in batches(digits.train, 64, shuffle=True, generator=g,
                                                drop_last=True)])
    a, b, c = order(0), order(0), order(1)
    assert len(a) == (1438 // 64) * 64
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_shuffle_is_a_permutation():
    x = torch.arange(10.0).view(10, 1, 1, 1)
    data = TensorData(x, torch.arange(10), torch.zeros(1), torch.ones(1))
    g = torch.Generator().manual_seed(0)
    xs, ys = zip(*data.batches(3, shuffle=True, generator=g), strict=True)
    assert sorted(torch.cat(ys).tolist()) == list(range(10))
    # images stay with their labels
    assert torch.equal(torch.cat(xs).view(-1), torch.cat(ys).float())


def test_crop_flip_takes_a_window_of_the_padded_image():
    x = torch.randn(16, 2, 6, 5)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (CROP_PAD,) * 4)
    flips = 0
    for i in range(len(x)):
        windows = []
        for dy in range(2 * CROP_PAD + 1):
            for dx in range(2 * CROP_PAD + 1):
                w = padded[i, :, dy:dy + 6, dx:dx + 5]
                windows += [(w, False), (w.flip(-1), True)]
        hits = [flip for w, flip in windows if torch.equal(w, out[i])]
        assert hits, f"image {i} is not a crop of its padded input"
        flips += hits[0]
    assert 0 < flips < len(x)  # both outcomes occur


def test_standard_augmentation_changes_training_batches_only():
    plain = load_data(DataConfig(augment="none"))
    aug = load_data(DataConfig(augment="standard"))
    assert aug.train.augment and not aug.val.augment
    assert torch.equal(_all(plain.val)[0], _all(aug.val)[0])
    assert not torch.equal(_all(plain.train)[0], _all(aug.train)[0])


def test_uint8_images_are_scaled_before_normalising():
    """The CIFAR path: uint8 pixels kept in memory, scaled by 1/255 per batch."""
    from nas.evaluate.data import _tensor_bundle

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.arange(50) % 5
    b = _tensor_bundle(x, y, DataConfig(augment="standard"), classes=5, scale=1 / 255,
                       name="u8")
    assert b.train.x.dtype == torch.uint8  # stored compactly
    xv, yv = _all(b.val)
    raw = x[split_indices(50, 0.2, 0)[1]].float() / 255
    expected = (raw - b.train.mean) / b.train.std
    assert torch.allclose(xv, expected, atol=1e-5) and torch.equal(yv % 5, yv)
    xt, _ = _all(b.train, shuffle=True, generator=g)
    assert xt.dtype == torch.float32 and xt.shape == (40, 3, 4, 4)


def test_synthetic_is_deterministic_and_learnable():
    cfg = SyntheticConfig(channels=2, size=(4, 4), classes=3, train=60, val=30, signal=2.0)
    x, y = synthetic_tensors(cfg, seed=0)
    x2, y2 = synthetic_tensors(cfg, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (90, 2, 4, 4) and torch.bincount(y).tolist() == [30, 30, 30]
    # class means are far apart compared with the noise (a signal to learn)
    means = torch.stack([x[y == c].mean(0) for c in range(3)])
    assert float((means[0] - means[1]).norm()) > 4.0
    b = load_data(DataConfig(dataset="synthetic", synthetic=cfg))
    assert (len(b.train), len(b.val), b.channels, b.size, b.classes) == (60, 30, 2, (4, 4), 3)


def test_cifar_missing_says_where_and_how(tmp_path):
    with pytest.raises(UserError) as err:
        load_data(DataConfig(dataset="cifar10"), data_dir=tmp_path)
    text = str(err.value)
    assert str(tmp_path) in text and "download=True" in text and "--data-dir" in text
    assert "\n" not in text


def test_cifar_corrupted_folder_is_a_user_error(tmp_path):
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(UserError, match="corrupted"):
        load_data(DataConfig(dataset="cifar100", root=str(tmp_path)))


def _image_tree(root, classes=("ant", "bee"), per_class=5, size=(6, 7)):
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (size[1], size[0]), (40 * c, 10 * i, 0)).save(
                root / name / f"{i}.png")


def test_imagefolder_split_from_train(tmp_path):
    _image_tree(tmp_path / "train")
    b = load_data(DataConfig(dataset="imagefolder", val_fraction=0.2), data_dir=tmp_path)
    assert (b.classes, b.channels, b.size) == (2, 3, (6, 7))
    assert len(b.train) == 8 and len(b.val) == 2
    train_paths = {p for p, _ in b.train.samples}
    assert not train_paths & {p for p, _ in b.val.samples}
    x, y = next(batches(b.train, 4))
    assert x.shape == (4, 3, 6, 7) and y.dtype == torch.long


def test_imagefolder_uses_val_folder_and_resizes(tmp_path):
    _image_tree(tmp_path / "train")
    _image_tree(tmp_path / "val", per_class=2)
    b = load_data(DataConfig(dataset="imagefolder", size=(4, 4)), data_dir=tmp_path)
    assert len(b.train) == 10 and len(b.val) == 4 and b.size == (4, 4)
    x, y = next(batches(b.val, 4))
    assert x.shape == (4, 3, 4, 4) and sorted(y.tolist()) == [0, 0, 1, 1]


def test_imagefolder_reads_tiny_imagenet_val_annotations(tmp_path):
    from PIL import Image

    _image_tree(tmp_path / "train", classes=("n01", "n02"))
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(["n02", "n01", "n02"]):
        Image.new("RGB", (7, 6)).save(tmp_path / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t5\t5")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    b = load_data(DataConfig(dataset="imagefolder"), data_dir=tmp_path)
    assert [label for _, label in b.val.samples] == [1, 0, 1]


def test_imagefolder_missing(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        load_data(DataConfig(dataset="imagefolder"), data_dir=tmp_path / "nothing")


def test_cached_data_loads_once_per_config():
    cfg = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(train=20, val=10))
    assert cached_data(cfg) is cached_data(cfg)
