"""Larger offline images composed from scikit-learn's bundled digits: the
``digit-scenes`` dataset.

Two published constructions, scaled to the 8x8 source digits (nothing is downloaded):

- ``cluttered``: one digit, upsampled ``digit_scale`` times, at a random position on a
  ``size`` x ``size`` canvas, plus ``clutter`` random ``clutter_size`` square pieces cut
  from other random digits at random positions; the label is the digit. This is
  "cluttered translated MNIST" (Mnih et al. 2014, Recurrent Models of Visual Attention,
  sec. 4.1: 28x28 digits with 8x8 clutter pieces on 60x60 / 100x100 canvases; Jaderberg
  et al. 2015, Spatial Transformer Networks, sec. 4.1, the same construction).
- ``pair-sum``: two digits at random positions at least ``min_distance`` pixels apart
  (centre to centre); the label is their sum modulo 10. A relation between two distant
  objects, the long-range-context setting of the attention papers; the "MNIST addition"
  construction (e.g. Jaderberg et al. 2015 sec. 4.1 "MNIST addition", with the two
  digits on one canvas instead of two channels).

Labels are balanced (each class ``n // classes`` or one more). The validation images are
composed from source digits the training images never use (the source split is
``nas.evaluate.data.split_indices`` over the 1797 digits), so a network cannot score by
recognising a memorised source digit. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("cluttered", "pair-sum")
CLASSES = 10


@dataclass(frozen=True)
class ScenesConfig:
    """How the ``digit-scenes`` images are composed (study key ``data.scenes``)."""

    task: str = "cluttered"
    #: canvas side in pixels (square, one channel).
    size: int = 32
    train: int = 8000
    val: int = 2000
    #: generation seed (the source-digit split is ``data.split_seed``).
    seed: int = 0
    #: each 8x8 source digit is upsampled to (8 * digit_scale) pixels square.
    digit_scale: int = 2
    #: cluttered: number of clutter pieces and their side in pixels.
    clutter: int = 4
    clutter_size: int = 6
    #: pair-sum: minimum distance between the two digits' centres, in pixels.
    min_distance: int = 16


def check_config(cfg: ScenesConfig) -> str | None:
    """The first thing wrong with ``cfg`` as 'field: why', or None."""
    if cfg.task not in TASKS:
        return f"task: {cfg.task!r} is not one of {', '.join(TASKS)}"
    side = 8 * cfg.digit_scale
    if side > cfg.size:
        return f"digit_scale: digits of {side}px do not fit a {cfg.size}px canvas"
    if cfg.task == "cluttered" and cfg.clutter and cfg.clutter_size > side:
        return f"clutter_size: {cfg.clutter_size} is larger than a digit ({side}px)"
    if cfg.task == "pair-sum":
        # The farthest two digits can be apart is the canvas diagonal between corners.
        reach = (cfg.size - side) * 2 ** 0.5
        if cfg.min_distance > 0.9 * reach:
            return (f"min_distance: {cfg.min_distance} leaves almost no room for two "
                    f"{side}px digits on a {cfg.size}px canvas (at most {reach:.0f})")
    return None


def upsample(images: np.ndarray, scale: int) -> np.ndarray:
    """(N, 8, 8) -> (N, 8*scale, 8*scale) by bilinear interpolation (torch's, no
    corner alignment), values kept in the source range."""
    if scale == 1:
        return images.astype(np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    return F.interpolate(t, scale_factor=scale, mode="bilinear",
                         align_corners=False)[:, 0].numpy()


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % CLASSES)


def compose(images: np.ndarray, labels: np.ndarray, n: int, cfg: ScenesConfig,
            salt: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` canvases (N, size, size) float32 in the source range (digits: 0..16) and
    their labels, drawn from the source ``images`` (N, 8, 8) / ``labels``; ``salt``
    separates the training and validation streams of one seed."""
    rng = np.random.default_rng([cfg.seed, salt])
    digits = upsample(images, cfg.digit_scale)
    side = digits.shape[1]
    by_class = [np.flatnonzero(labels == c) for c in range(CLASSES)]
    canvas = np.zeros((n, cfg.size, cfg.size), np.float32)
    y = balanced_labels(n, rng)
    span = cfg.size - side + 1

    def paste(i: int, patch: np.ndarray, top: int, left: int) -> None:
        h, w = patch.shape
        view = canvas[i, top : top + h, left : left + w]
        np.maximum(view, patch, out=view)  # overlaps keep the brighter stroke

    for i in range(n):
        if cfg.task == "cluttered":
            for _ in range(cfg.clutter):  # clutter first; the digit is drawn over it
                src = digits[rng.integers(len(digits))]
                r, c = rng.integers(side - cfg.clutter_size + 1, size=2)
                piece = src[r : r + cfg.clutter_size, c : c + cfg.clutter_size]
                top, left = rng.integers(cfg.size - cfg.clutter_size + 1, size=2)
                paste(i, piece, top, left)
            digit = digits[rng.choice(by_class[y[i]])]
            paste(i, digit, *rng.integers(span, size=2))
        else:  # pair-sum: a uniform first digit, the second fixed by the label
            a = int(rng.integers(CLASSES))
            b = (int(y[i]) - a) % CLASSES
            first = rng.integers(span, size=2)
            while True:  # rejection sampling; check_config keeps it short
                second = rng.integers(span, size=2)
                if np.hypot(*(first - second)) >= cfg.min_distance:
                    break
            paste(i, digits[rng.choice(by_class[a])], *first)
            paste(i, digits[rng.choice(by_class[b])], *second)
    return canvas, y
