"""Datasets for proxy training: digits (bundled, offline), digit scenes (32x32 and larger
images composed from those digits, :mod:`nas.evaluate.digit_scenes`), CIFAR-10/100 and image
folders (read from disk, never downloaded), and a synthetic set for tests.

``load_data(data_cfg, data_dir=None) -> DataBundle`` gives a training and a validation
split with the shape (channels, size, classes) the search space must agree with. The
validation split is a FIXED part of the training set (``val_fraction``, permutation
seeded by ``split_seed``): a search must never look at a test set.

Small datasets (digits, digit scenes, CIFAR, synthetic) are kept in memory as tensors
(:class:`TensorData`, uint8 where the source is 8-bit) and iterated by plain index
batching, with augmentation done on whole batches as tensor ops (on the GPU when training
there) and the normalisation fused into the uint8 -> float conversion: DataLoader worker
processes cost seconds to start on a 2-core machine, more than a digits epoch, and a
per-image PIL pipeline bounds a GPU trial. The memory rule: the whole split moves to the
training device once when it takes at most ``DEVICE_DATA_FRACTION`` of the device's free
memory (always on the CPU); otherwise it stays in (pinned) host memory and each batch is
gathered there and copied over. Image folders are read through a torch DataLoader.
:func:`batches` iterates either kind the same way.

``cached_data`` keeps one loaded bundle per process so a worker that runs many trials
loads its dataset once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..study import DataConfig, SyntheticConfig

#: augmentation padding for the random crop of ``augment: standard``.
CROP_PAD = 4
#: ImageNet statistics, used for image folders (computing them would read every file).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: a TensorData split is held on a GPU when it takes at most this share of its free
#: memory (the rest is for the trials: several may share the GPU).
DEVICE_DATA_FRACTION = 0.25


@dataclass
class DataBundle:
    """A training and a validation split plus the shape every model must take."""

    train: Any  # TensorData or a torch Dataset of (image tensor, label)
    val: Any
    classes: int
    channels: int
    size: tuple[int, int]
    name: str = ""

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val, "
                f"{self.channels}x{self.size[0]}x{self.size[1]}, {self.classes} classes")


class TensorData:
    """An in-memory split: raw images (uint8 or float, scaled by ``scale`` to [0, 1]
    or to the raw signal range), labels, per-channel normalisation and optional
    standard augmentation (random crop with zero padding + horizontal flip), all applied
    per batch on the device the batch goes to."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor,
                 std: torch.Tensor, *, scale: float = 1.0, augment: bool = False):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"TensorData wants x (N, C, H, W) and y (N,), got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        self.x, self.y = x, y.long()
        self.mean = mean.float().view(1, -1, 1, 1)
        self.std = std.float().view(1, -1, 1, 1)
        self.scale = float(scale)
        self.augment = augment
        self._on_device: dict[str, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One normalised, un-augmented example (for inspection; training batches)."""
        x = (self.x[i : i + 1].float() * self.scale - self.mean) / self.std
        return x[0], int(self.y[i])

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size() + self.y.numel() * 8

    def placement(self, device: Any) -> str:
        """"device" (the split is held on ``device``) or "host" (batches are copied)."""
        return "device" if fits_on_device(self.nbytes, torch.device(device)) else "host"

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        # One copy per device: the whole set moves to the GPU once, not every epoch;
        # a split too large for the rule stays on the host (pinned for async copies).
        key = str(device)
        if key not in self._on_device:
            held = device if self.placement(device) == "device" else torch.device("cpu")
            x, y = self.x.to(held), self.y.to(held)
            if held.type == "cpu" and device.type == "cuda":
                x, y = x.pin_memory(), y.pin_memory()
            # Normalisation fused with the scaling: x * (scale / std) - mean / std.
            gain = (self.scale / self.std).to(device)
            shift = (-self.mean / self.std).to(device)
            self._on_device[key] = (x, y, gain, shift)
        return self._on_device[key]

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, device: Any = "cpu",
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = torch.device(device)
        x, y, gain, shift = self._tensors(device)
        n = len(y)
        order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
        steps = n // batch_size if drop_last and n >= batch_size else math.ceil(n / batch_size)
        for i in range(steps):
            sl = slice(i * batch_size, min((i + 1) * batch_size, n))
            idx = order[sl] if order is not None else sl
            xb, yb = x[idx], y[idx]
            if xb.device != device:  # held on the host: copy this batch only
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
            if self.augment:  # on the raw values (uint8 stays uint8): zero padding = 0
                xb = crop_flip(xb, generator)
            yield torch.addcmul(shift, xb.float(), gain), yb


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """The memory rule of :class:`TensorData`: always on the CPU (the split is in host
    memory already); on a GPU when ``nbytes`` <= DEVICE_DATA_FRACTION x free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_DATA_FRACTION * free


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
              pad: int = CROP_PAD) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy plus a random horizontal flip,
    for a whole batch at once (torchvision's RandomCrop(padding) + RandomHorizontalFlip).
    Random numbers are drawn on the CPU from ``generator`` so runs repeat exactly.

    Same distribution as torchvision's PIL path (uniform offsets in [0, 2 pad], flip with
    probability 1/2: tests/nas/test_fast_path.py), not the same images for a seed:
    torchvision draws (offset, offset, flip) image by image from the global generator in
    DataLoader order, this draws each quantity for the whole batch in turn."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (B, H+2p, W+2p, C)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = dy[:, None] + torch.arange(h)
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip is reversed columns
    bi = torch.arange(b)[:, None, None]
    dev = x.device
    out = padded[bi.to(dev), rows[:, :, None].to(dev), cols[:, None, :].to(dev)]
    return out.permute(0, 3, 1, 2).contiguous()


def batches(data: Any, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, device: Any = "cpu",
            drop_last: bool = False, workers: int = 0,
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate (images, labels) batches on ``device`` from a TensorData or any torch
    Dataset (the latter through a DataLoader with ``workers`` processes)."""
    if isinstance(data, TensorData):
        yield from data.batches(batch_size, shuffle=shuffle, generator=generator,
                                device=device, drop_last=drop_last)
        return
    device = torch.device(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                        num_workers=workers, drop_last=drop_last and len(data) >= batch_size,
                        pin_memory=device.type == "cuda")
    try:
        for xb, yb in loader:
            yield (xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
    except UserError as err:  # from a loader worker: its traceback is in the message
        last = str(err).strip().splitlines()[-1]
        raise UserError(last.split("UserError: ", 1)[-1]) from None


# --------------------------------------------------------------------------- loading
def load_data(data_cfg: DataConfig | dict[str, Any],
              data_dir: str | os.PathLike | None = None) -> DataBundle:
    """Load the dataset a study names. ``data_dir`` (``--data-dir``) overrides
    ``data.root``; missing files raise UserError saying where we looked and how to get
    them."""
    if isinstance(data_cfg, dict):
        from ..study import parse_data, user_errors

        with user_errors():
            data_cfg = parse_data(data_cfg)
    kind = data_cfg.dataset
    if kind == "digits":
        x, y = _digits()
        return _tensor_bundle(x, y, data_cfg, classes=10, scale=1.0 / 16, name="digits")
    if kind == "digit-scenes":
        return _digit_scenes(data_cfg)
    if kind in ("cifar10", "cifar100"):
        x, y, classes = _cifar(kind, _root(data_cfg, data_dir))
        return _tensor_bundle(x, y, data_cfg, classes=classes, scale=1.0 / 255, name=kind)
    if kind == "synthetic":
        s = data_cfg.synthetic or SyntheticConfig()
        x, y = synthetic_tensors(s, seed=data_cfg.split_seed)
        return _tensor_bundle(x, y, data_cfg, classes=s.classes, scale=1.0,
                              name="synthetic", n_val=s.val)
    if kind == "imagefolder":
        return _imagefolder(data_cfg, _root(data_cfg, data_dir))
    raise UserError(f"study.data.dataset: {kind!r} is not a known dataset")


_CACHE: dict[tuple[DataConfig, str | None], DataBundle] = {}


def cached_data(data_cfg: DataConfig, data_dir: str | os.PathLike | None = None) -> DataBundle:
    """``load_data`` once per process for each (config, data_dir)."""
    key = (data_cfg, None if data_dir is None else str(data_dir))
    if key not in _CACHE:
        _CACHE.clear()  # a worker serves one study at a time; keep memory bounded
        _CACHE[key] = load_data(data_cfg, data_dir)
    return _CACHE[key]


def _root(cfg: DataConfig, data_dir: str | os.PathLike | None) -> Path:
    root = data_dir or cfg.root or os.environ.get("NAS_DATA_DIR") or "data"
    return Path(root).expanduser()


def split_indices(n: int, val_fraction: float, seed: int,
                  n_val: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (train, val) index split: a permutation seeded by ``seed``; the first
    ``n_val`` (default round(n * val_fraction), at least 1) indices are validation."""
    if n_val is None:
        n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise UserError(f"study.data.val_fraction: leaves no training examples out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def _tensor_bundle(x: torch.Tensor, y: torch.Tensor, cfg: DataConfig, *, classes: int,
                   scale: float, name: str, n_val: int | None = None,
                   split: tuple[torch.Tensor, torch.Tensor] | None = None) -> DataBundle:
    """``split``: (train, val) indices fixed by the dataset; default ``split_indices``."""
    train_idx, val_idx = split or split_indices(len(y), cfg.val_fraction, cfg.split_seed,
                                                n_val)
    if cfg.subset is not None:
        train_idx = train_idx[: cfg.subset]
    xt = x[train_idx]
    # Normalisation statistics come from the training split only.
    flat = (xt.float() * scale).transpose(0, 1).reshape(x.shape[1], -1)
    mean, std = flat.mean(1), flat.std(1).clamp_min(1e-6)
    train = TensorData(xt, y[train_idx], mean, std, scale=scale,
                       augment=cfg.augment == "standard")
    val = TensorData(x[val_idx], y[val_idx], mean, std, scale=scale)
    return DataBundle(train=train, val=val, classes=classes, channels=x.shape[1],
                      size=(x.shape[2], x.shape[3]), name=name)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.uint8).unsqueeze(1)  # whole numbers 0..16
    return x, torch.tensor(d.target, dtype=torch.long)


def _digit_scenes(cfg: DataConfig) -> DataBundle:
    """Canvases composed from the digits; validation ones only from the source digits
    that ``split_indices(val_fraction, split_seed)`` holds out (see nas.evaluate.digit_scenes)."""
    import numpy as np

    from .digit_scenes import ScenesConfig, compose

    s = cfg.scenes or ScenesConfig()
    x, y = _digits()
    src_train, src_val = split_indices(len(y), cfg.val_fraction, cfg.split_seed)
    images, labels = x[:, 0].numpy(), y.numpy()
    xv, yv = compose(images[src_val.numpy()], labels[src_val.numpy()], s.val, s, salt=1)
    xt, yt = compose(images[src_train.numpy()], labels[src_train.numpy()], s.train, s,
                     salt=0)
    # Stored as uint8 (0..255) like CIFAR: a quarter of the memory of float32.
    pixels = np.rint(np.concatenate([xv, xt]) * (255 / 16)).clip(0, 255).astype(np.uint8)
    xs = torch.from_numpy(pixels).unsqueeze(1)
    ys = torch.from_numpy(np.concatenate([yv, yt])).long()
    split = (torch.arange(s.val, s.val + s.train), torch.arange(s.val))
    return _tensor_bundle(xs, ys, cfg, classes=10, scale=1.0 / 255,
                          name=f"digit-scenes:{s.task}", split=split)


def synthetic_tensors(cfg: SyntheticConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes times ``signal`` plus unit Gaussian noise: learnable when
    signal > 0, pure noise at 0. Balanced labels; deterministic in ``seed``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    n = cfg.train + cfg.val
    h, w = cfg.size
    protos = torch.randn(cfg.classes, cfg.channels, h, w, generator=g)
    y = (torch.arange(n) % cfg.classes)[torch.randperm(n, generator=g)]
    x = cfg.signal * protos[y] + torch.randn(n, cfg.channels, h, w, generator=g)
    return x, y


_CIFAR = {"cifar10": ("CIFAR-10", "CIFAR10", "cifar-10-batches-py"),
          "cifar100": ("CIFAR-100", "CIFAR100", "cifar-100-python")}


def _cifar(kind: str, root: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    import torchvision

    title, cls_name, folder = _CIFAR[kind]
    if not (root / folder).is_dir():
        raise UserError(
            f"{title} not found under {root} (no {folder}/ there); download it on a "
            f"networked machine with torchvision.datasets.{cls_name}(root='{root}', "
            "download=True) and copy it here, or pass --data-dir")
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=True, download=False)
    except RuntimeError as err:  # torchvision's integrity check failed
        raise UserError(f"{title} under {root} is incomplete or corrupted ({err}); "
                        f"download it again with torchvision.datasets.{cls_name}("
                        f"root='{root}', download=True)") from None
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, 32, 32)
    y = torch.tensor(ds.targets, dtype=torch.long)
    return x, y, len(ds.classes)


# --------------------------------------------------------------------------- folders
class FileImages(Dataset):
    """(path, label) samples read with torchvision's default loader and a transform.

    An image that cannot be read (corrupt, truncated, not an image) is an error naming
    the file, as in torchvision's ImageFolder, rather than skipped with a warning as
    timm's ImageDataset does: a search compares architectures on the same data, and a
    silently swapped or missing sample differs between trials and runs. Fix or delete
    the file (the error says which); a search stops at the first trial that meets it.
    """

    def __init__(self, samples: list[tuple[str, int]], transform: Any):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        try:
            image = default_loader(path)
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for bad files
            why = ("not an image file PIL recognises" if type(err).__name__ ==
                   "UnidentifiedImageError" else f"{type(err).__name__}: {_first_line(err)}")
            raise UserError(f"image {path} cannot be read ({why}); replace or delete "
                            "it") from None
        return self.transform(image), label


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def _imagefolder(cfg: DataConfig, root: Path) -> DataBundle:
    """``root/train/<class>/*`` (or ``root/<class>/*``); validation from ``root/val``
    when it is an image folder with the same classes or Tiny-ImageNet's
    ``val/val_annotations.txt`` layout, else a fixed split of the training folder."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    train_dir = root / "train" if (root / "train").is_dir() else root
    if not train_dir.is_dir():
        raise UserError(f"image folder not found under {root}; expected {root}/train/"
                        "<class>/<image> (Tiny-ImageNet layout) or pass --data-dir")
    try:
        folder = ImageFolder(str(train_dir))
    except (FileNotFoundError, RuntimeError) as err:
        raise UserError(f"image folder {train_dir}: {err}") from None
    size = cfg.size or _first_image_size(folder.samples[0][0])
    norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    base = [transforms.Resize(size)] if cfg.size else []
    eval_tf = transforms.Compose([*base, transforms.ToTensor(), norm])
    aug = ([transforms.RandomCrop(size, padding=CROP_PAD), transforms.RandomHorizontalFlip()]
           if cfg.augment == "standard" else [])
    train_tf = transforms.Compose([*base, *aug, transforms.ToTensor(), norm])

    val_samples = _val_samples(root / "val", folder.class_to_idx)
    samples = folder.samples
    if val_samples is None:
        train_idx, val_idx = split_indices(len(samples), cfg.val_fraction, cfg.split_seed)
        val_samples = [samples[i] for i in val_idx.tolist()]
        samples = [samples[i] for i in train_idx.tolist()]
    else:
        order = torch.randperm(len(samples),
                               generator=torch.Generator().manual_seed(cfg.split_seed))
        samples = [samples[i] for i in order.tolist()]
    if cfg.subset is not None:
        samples = samples[: cfg.subset]
    return DataBundle(train=FileImages(samples, train_tf), val=FileImages(val_samples, eval_tf),
                      classes=len(folder.classes), channels=3, size=tuple(size),
                      name=f"imagefolder:{root.name}")


def _first_image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return (im.height, im.width)


def _val_samples(val_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]] | None:
    if not val_dir.is_dir():
        return None
    notes = val_dir / "val_annotations.txt"
    if notes.is_file():  # Tiny-ImageNet: val/images/<file> + "<file>\t<wnid>\t..."
        out = []
        for line in notes.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in class_to_idx:
                out.append((str(val_dir / "images" / parts[0]), class_to_idx[parts[1]]))
        return out or None
    subdirs = sorted(p.name for p in val_dir.iterdir() if p.is_dir())
    if subdirs and set(subdirs) == set(class_to_idx):
        from torchvision.datasets import ImageFolder

        # Same sorted class names, so ImageFolder's indices are the training ones.
        return list(ImageFolder(str(val_dir)).samples)
    return None
