"""The in-memory fast path (nas.evaluate.data.TensorData): its crops and flips follow the same
distribution as torchvision's PIL pipeline (RandomCrop(padding=4) + RandomHorizontalFlip),
its fused uint8 normalisation gives what scaling then normalising gives, it repeats
exactly for a seed, and the study's ``compile`` setting reaches the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.evaluate.data import CROP_PAD, TensorData, crop_flip, fits_on_device
from nas.study import load_study

SIZE = 8
DRAWS = 6000


def _coded_image() -> torch.Tensor:
    """(1, 3, 8, 8) uint8 whose pixels are all different and non-zero (0 = padding)."""
    values = torch.arange(1, 3 * SIZE * SIZE + 1, dtype=torch.int64) % 251 + 1
    return values.view(1, 3, SIZE, SIZE).to(torch.uint8)


def _outcomes(image: torch.Tensor) -> dict[bytes, int]:
    """Every (dy, dx, flip) outcome of a pad-4 crop + flip, keyed by the pixels it gives."""
    padded = torch.nn.functional.pad(image[0], (CROP_PAD,) * 4)
    table = {}
    for dy in range(2 * CROP_PAD + 1):
        for dx in range(2 * CROP_PAD + 1):
            crop = padded[:, dy:dy + SIZE, dx:dx + SIZE]
            for flip in (0, 1):
                out = crop.flip(-1) if flip else crop
                table[out.contiguous().numpy().tobytes()] = len(table)
    return table


def _counts(outputs: list[torch.Tensor], table: dict[bytes, int]) -> np.ndarray:
    counts = np.zeros(len(table), dtype=np.int64)
    for out in outputs:
        counts[table[out.contiguous().numpy().tobytes()]] += 1  # KeyError: not a crop+flip
    return counts


def test_crop_flip_matches_torchvision_distribution():
    from PIL import Image
    from scipy.stats import chi2_contingency, chisquare
    from torchvision import transforms

    image = _coded_image()
    table = _outcomes(image)
    assert len(table) == (2 * CROP_PAD + 1) ** 2 * 2  # all outcomes tell apart

    g = torch.Generator().manual_seed(0)
    ours = crop_flip(image.expand(DRAWS, -1, -1, -1), g)
    ours_counts = _counts(list(ours), table)

    torch.manual_seed(0)  # torchvision draws from the global generator
    reference = transforms.Compose([transforms.RandomCrop(SIZE, padding=CROP_PAD),
                                    transforms.RandomHorizontalFlip(), transforms.PILToTensor()])
    pil = Image.fromarray(image[0].permute(1, 2, 0).numpy())
    ref_counts = _counts([reference(pil) for _ in range(DRAWS)], table)

    # Same support (every outcome occurs in both) and the same distribution: each is
    # uniform over the 162 outcomes, and the two samples are homogeneous.
    assert (ours_counts > 0).all() and (ref_counts > 0).all()
    assert chisquare(ours_counts).pvalue > 1e-3
    assert chisquare(ref_counts).pvalue > 1e-3
    assert chi2_contingency(np.stack([ours_counts, ref_counts])).pvalue > 1e-3
    # Flip marginal: half of the draws in both.
    flips = np.array([i % 2 for i in range(len(table))])
    assert abs(ours_counts[flips == 1].sum() / DRAWS - 0.5) < 0.03
    assert abs(ref_counts[flips == 1].sum() / DRAWS - 0.5) < 0.03


def test_crop_flip_on_uint8_equals_crop_flip_on_floats():
    x = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    a = crop_flip(x, torch.Generator().manual_seed(3))
    b = crop_flip(x.float(), torch.Generator().manual_seed(3))
    assert a.dtype == torch.uint8
    assert torch.equal(a.float(), b)


def _uint8_split(augment: bool) -> TensorData:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 3, 10, 10), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 4
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    return TensorData(x, y, mean, std, scale=1 / 255, augment=augment)


def test_fused_normalisation_equals_scale_then_normalise_with_the_same_draws():
    data = _uint8_split(augment=True)
    got = list(data.batches(16, shuffle=True, generator=torch.Generator().manual_seed(5)))
    # The unfused reference: same generator, same order of draws (permutation, then per
    # batch dy, dx, flip), applied to the scaled floats.
    g = torch.Generator().manual_seed(5)
    order = torch.randperm(len(data), generator=g)
    mean, std = data.mean, data.std
    for i, (xb, yb) in enumerate(got):
        idx = order[i * 16:(i + 1) * 16]
        ref = (crop_flip(data.x[idx].float() / 255, g) - mean) / std
        assert torch.equal(yb, data.y[idx])
        torch.testing.assert_close(xb, ref, atol=1e-5, rtol=1e-5)


def test_same_seed_same_batches_other_seed_other_batches():
    data = _uint8_split(augment=True)

    def run(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [xb for xb, _ in data.batches(8, shuffle=True, generator=gen)]

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))


def test_memory_rule_keeps_cpu_splits_where_they_are():
    data = _uint8_split(augment=False)
    assert fits_on_device(10**15, torch.device("cpu"))
    assert data.placement("cpu") == "device"
    assert data.nbytes == 40 * 3 * 10 * 10 + 40 * 8


def test_digits_are_held_as_uint8_with_the_same_values():
    from sklearn.datasets import load_digits

    from nas.evaluate.data import load_data

    bundle = load_data({"dataset": "digits", "val_fraction": 0.2})
    assert bundle.train.x.dtype == torch.uint8
    images = torch.tensor(load_digits().images)
    assert bundle.train.x.float().sum() + bundle.val.x.float().sum() == images.sum()


def test_compile_is_a_study_setting_off_by_default():
    from nas.errors import UserError

    study = load_study(None)
    assert study.training.compile is False
    raw = study.to_dict()
    raw["training"]["compile"] = True
    assert load_study(raw).training.compile is True
    raw["training"]["compile"] = "yes"
    with pytest.raises(UserError, match=r"training\.compile: 'yes' is not allowed"):
        load_study(raw)
