"""The dataset part of the dry-run plan (:mod:`nas.search.plan`): whether the study's
data is where the search would look, and how many training and validation examples it
has (counted, derived from the split, or assumed). The plan never needs the data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..study import Study

DIGITS_EXAMPLES = 1797
CIFAR_TRAIN_EXAMPLES = 50_000
_CIFAR_FOLDERS = {"cifar10": ("CIFAR-10", "cifar-10-batches-py"),
                  "cifar100": ("CIFAR-100", "cifar-100-python")}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                     ".webp")


def data_status(study: Study, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Whether the study's dataset is where the search would look, and its sizes
    (``train``/``val`` examples; counted, derived from the split, or assumed)."""
    cfg = study.data
    kind = cfg.dataset
    out: dict[str, Any] = {"dataset": kind, "present": True, "where": None,
                           "train": None, "val": None, "sizes": "the dataset's fixed size",
                           "message": ""}
    if kind == "digits":
        out.update(_split_sizes(DIGITS_EXAMPLES, cfg))
        out["where"] = "bundled with scikit-learn"
    elif kind == "synthetic":
        s = cfg.synthetic
        train = min(s.train, cfg.subset) if cfg.subset else s.train
        out.update(train=train, val=s.val, where="generated")
    elif kind == "digit-scenes":
        s = cfg.scenes
        train = min(s.train, cfg.subset) if cfg.subset else s.train
        out.update(train=train, val=s.val, where="composed from scikit-learn's digits")
    elif kind in _CIFAR_FOLDERS:
        from ..evaluate.data import _root

        root = _root(cfg, data_dir)
        out["where"] = str(root.resolve())
        out.update(_split_sizes(CIFAR_TRAIN_EXAMPLES, cfg))
        if not (root / _CIFAR_FOLDERS[kind][1]).is_dir():
            out.update(present=False, message=_missing_message(study, data_dir))
    else:  # imagefolder
        from ..evaluate.data import _root

        root = _root(cfg, data_dir)
        out["where"] = str(root.resolve())
        train_dir = root / "train" if (root / "train").is_dir() else root
        if train_dir.is_dir() and any(p.is_dir() for p in train_dir.iterdir()):
            out["classes"] = sum(1 for p in train_dir.iterdir() if p.is_dir())
            n = _count_images(train_dir)
            val_dir = root / "val"
            n_val = _count_images(val_dir) if val_dir.is_dir() else 0
            if n_val:
                train = min(n, cfg.subset) if cfg.subset else n
                out.update(train=train, val=n_val, sizes="counted")
            else:
                out.update(_split_sizes(n, cfg), sizes="counted")
        else:
            out.update(present=False, message=_missing_message(study, data_dir))
            if cfg.subset:
                out.update(train=cfg.subset, val=max(1, round(cfg.subset * cfg.val_fraction)),
                           sizes="assumed from data.subset (dataset missing)")
            else:
                out["sizes"] = "unknown (dataset missing and no data.subset)"
    return out


def _split_sizes(n: int, cfg: Any) -> dict[str, int]:
    n_val = max(1, round(n * cfg.val_fraction))
    train = n - n_val
    return {"train": min(train, cfg.subset) if cfg.subset else train, "val": n_val}


def _count_images(folder: Path) -> int:
    n = 0
    for _, _, files in os.walk(folder):
        n += sum(1 for f in files if f.lower().endswith(_IMAGE_EXTENSIONS))
    return n


def _missing_message(study: Study, data_dir: Any) -> str:
    """The loader's own one-line message (it fails fast, before reading anything)."""
    from ..evaluate.data import load_data

    try:
        load_data(study.data, data_dir)
    except UserError as err:
        return str(err)
    return ""
