"""Training throughput of the toolkit's trainer against the plain loop a user would write.

    python benchmarks/train_throughput.py --device cpu --json        # ~5 min on one idle core
    python benchmarks/train_throughput.py --device cuda --json       # GPU: bigger defaults

Both loops train the SAME zoo model (same initial weights per seed), with the same
optimizer (SGD, momentum 0.9, weight decay 5e-4, constant lr 0.05), batch size, number
of steps and device, on the same CIFAR-shaped data that this script writes to disk in the
real CIFAR-10 python-pickle format (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``; learnable class patterns plus noise, nothing
downloaded):

- toolkit: the split as ``nas.evaluate.data`` loads CIFAR-10 (uint8 tensors held on the device,
  crop + flip + normalisation as batched tensor ops) trained by ``nas.evaluate.train.train``
  (bf16 autocast + channels-last on CUDA, as a study's ``auto`` gives; ``--compile``
  adds torch.compile);
- reference: ``torchvision.datasets.CIFAR10`` with the standard transforms
  (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a DataLoader
  (shuffle, ``--workers``, pinned memory on CUDA) and a plain fp32 loop.

``imgs_per_s`` = training images / wall seconds of the training steps (data loading
included, evaluation excluded), per seed, after an untimed warm-up run of each loop
(``--warmup-steps``, 10 on CUDA: the first steps autotune cuDNN, ~10x slower);
``ratio`` = toolkit / reference (median over seeds). Accuracy: both models on the same
held-out ``test_batch`` after the fixed number of steps, each normalised as its training
inputs were (the toolkit with the training split's own channel statistics, the
reference with CIFAR-10's). torchvision's CIFAR10 checks the md5 of the official files,
which data written here cannot match, so both loops read the files through a subclass
that skips that
check (the toolkit's own loader would refuse them, rightly, as corrupted).

Writes benchmarks/results/train_throughput_cpu.{json,png} (``--device cuda``:
benchmarks/results/cuda/train_throughput.{json,png}); ``--json`` prints the JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("resnet18-cifar", "aa-resnet18-cifar", "eaanet-concat-longformer")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
WARMUP_SEED = 9_999  # the untimed warm-up run's seed, apart from the timed ones
#: (batch, steps, train images, test images, workers) per device when not given.
DEFAULTS = {"cpu": (32, 8, 1024, 256, 0), "cuda": (256, 120, 25_000, 5_000, 6)}


# --------------------------------------------------------------------------- the data
def write_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """CIFAR-10-shaped data in the real python-pickle layout under root: 10 classes, each
    a smooth random colour pattern (4x4 upsampled), plus pixel noise; uint8 HWC rows."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, 3, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(protos, size=(32, 32), mode="bilinear",
                                             align_corners=False)

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = 128 + 45 * protos[y] + 50 * torch.randn(n, 3, 32, 32, generator=g)
        rows = x.clamp(0, 255).round().to(torch.uint8).reshape(n, 3 * 32 * 32)
        return rows.numpy(), y.tolist()

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n_train // 5)
    for i in range(5):
        data, labels = images(min(per, n_train - i * per))
        _dump(folder / f"data_batch_{i + 1}", {
            "batch_label": f"training batch {i + 1} of 5", "labels": labels, "data": data,
            "filenames": [f"img_{i}_{k}.png" for k in range(len(labels))]})
    data, labels = images(n_test)
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels,
                                  "data": data, "filenames": [f"t_{k}.png" for k in range(n_test)]})
    _dump(folder / "batches.meta", {"num_cases_per_batch": per, "num_vis": 3072,
                                    "label_names": [f"class{k}" for k in range(10)]})
    return root


def _dump(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def unchecked_cifar10():
    """torchvision's CIFAR10 without the md5 check of the official files (see above)."""
    from torchvision.datasets import CIFAR10

    class LocalCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]),
                      "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return LocalCIFAR10


# --------------------------------------------------------------------------- the loops
def _model(name: str, seed: int) -> torch.nn.Module:
    from nas.evaluate.train import seed_everything
    from search_space.zoo import load_zoo

    seed_everything(seed)
    return load_zoo(name).build()


def toolkit_loop(name: str, root: Path, args: Any, seed: int, device: torch.device):
    """nas.evaluate.data's CIFAR split (the loader's own bundling code after reading the files)
    trained by nas.evaluate.train.train for ``args.steps`` steps; (model, images/s,
    precision, (mean, std) the inputs were normalised with)."""
    from nas.evaluate.data import _tensor_bundle
    from nas.evaluate.train import train
    from nas.study import DataConfig, TrainingConfig

    ds = unchecked_cifar10()(str(root), train=True)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(ds.targets)
    # val_fraction leaves one image out: nas.evaluate.data always holds a validation split.
    bundle = _tensor_bundle(x, y, DataConfig(dataset="cifar10", augment="standard",
                                             val_fraction=1 / len(y)),
                            classes=10, scale=1 / 255, name="cifar10")
    cfg = TrainingConfig(epochs=1, batch_size=args.batch, optimizer="sgd", lr=LR,
                         momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, schedule="constant",
                         max_steps_per_epoch=args.steps, compile=args.compile)
    model = _model(name, seed)
    result = train(model, bundle, cfg, device=device, seed=seed)
    steps = result.history[0]["steps"]
    # the toolkit normalises with the training split's own statistics, not CIFAR's
    norm = (bundle.train.mean.flatten(), bundle.train.std.flatten())
    return (model, steps * args.batch / result.history[0]["train_epoch_s"],
            result.precision, norm)


def reference_loop(name: str, root: Path, args: Any, seed: int, device: torch.device):
    """The plain loop: torchvision dataset + standard transforms + DataLoader, fp32."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    ds = unchecked_cifar10()(str(root), train=True, transform=tf)
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=False,
                        generator=torch.Generator().manual_seed(seed))
    model = _model(name, seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    torch.manual_seed(seed + 1)
    start, steps = time.perf_counter(), 0
    while steps < args.steps:
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if steps >= args.steps:
                break
    float(loss.detach())  # waits for the device
    norm = (torch.tensor(CIFAR_MEAN), torch.tensor(CIFAR_STD))
    return model, steps * args.batch / (time.perf_counter() - start), "fp32", norm


def test_accuracy(model: torch.nn.Module, root: Path, device: torch.device,
                  precision: str, norm: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Accuracy on ``test_batch``, normalised as the model's training inputs were."""
    from nas.evaluate.data import TensorData
    from nas.evaluate.train import evaluate

    ds = unchecked_cifar10()(str(root), train=False)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    test = TensorData(x, torch.tensor(ds.targets), *norm, scale=1 / 255)
    acc, _ = evaluate(model, test, device=device, batch_size=256, precision=precision,
                      channels_last=device.type == "cuda")
    return acc


# --------------------------------------------------------------------------- report
def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "per_seed": values}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["models"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k, loop in enumerate(("toolkit", "reference")):
        vals = [summary["models"][n][loop]["imgs_per_s"]["median"] for n in names]
        axes[0].bar([i + 0.4 * k for i in range(len(names))], vals, width=0.4, label=loop)
        accs = [summary["models"][n][loop]["accuracy"]["median"] for n in names]
        axes[1].bar([i + 0.4 * k for i in range(len(names))], accs, width=0.4, label=loop)
    for ax, title in zip(axes, ("training images / s (median over seeds)",
                                f"test accuracy after {summary['steps']} steps"), strict=True):
        ax.set_xticks([i + 0.2 for i in range(len(names))], names, rotation=15, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"{summary['device_name']} ({summary['device']}), batch {summary['batch']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="training steps per loop")
    ap.add_argument("--train-images", type=int, default=None)
    ap.add_argument("--test-images", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None,
                    help="reference DataLoader workers (default: 0 on CPU, 6 on CUDA)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--warmup-steps", type=int, default=None,
                    help="untimed steps of each loop before its timed seeds (default: 10 "
                         "on CUDA, where the first steps autotune cuDNN; 0 on CPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile the toolkit's model")
    ap.add_argument("--json", action="store_true", help="print the JSON object")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (PNG next to it)")
    args = ap.parse_args(argv)
    from search_space.measure import device_name

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("train_throughput: --device cuda but CUDA is not available")
    batch, steps, n_train, n_test, workers = DEFAULTS[args.device]
    args.batch = args.batch or batch
    args.steps = args.steps or steps
    args.workers = workers if args.workers is None else args.workers
    if args.warmup_steps is None:
        args.warmup_steps = 10 if args.device == "cuda" else 0
    n_train = args.train_images or max(n_train, args.batch * 2)
    n_test = args.test_images or n_test
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    out = args.out or (RESULTS / "cuda" / "train_throughput.json" if device.type == "cuda"
                       else RESULTS / "train_throughput_cpu.json")

    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cifar-shaped-") as tmp:
        root = write_cifar(Path(tmp), n_train, n_test)
        for name in args.models:
            row: dict[str, Any] = {}
            for loop_name, loop in (("toolkit", toolkit_loop), ("reference", reference_loop)):
                rates, accs = [], []
                if args.warmup_steps:  # untimed: cuDNN's autotuning, allocator, workers
                    loop(name, root, argparse.Namespace(**{**vars(args),
                                                           "steps": args.warmup_steps}),
                         WARMUP_SEED, device)
                for seed in args.seeds:
                    model, rate, precision, norm = loop(name, root, args, seed, device)
                    rates.append(rate)
                    accs.append(test_accuracy(model, root, device, precision, norm))
                    print(f"{name:26s} {loop_name:9s} seed {seed}: {rate:8.1f} img/s, "
                          f"test accuracy {accs[-1]:.3f} ({precision})", file=sys.stderr,
                          flush=True)
                    del model
                row[loop_name] = {"imgs_per_s": _spread(rates), "accuracy": _spread(accs),
                                  "precision": precision}
            row["ratio"] = (row["toolkit"]["imgs_per_s"]["median"]
                            / row["reference"]["imgs_per_s"]["median"])
            row["ratio_per_seed"] = [a / b for a, b in zip(
                row["toolkit"]["imgs_per_s"]["per_seed"],
                row["reference"]["imgs_per_s"]["per_seed"], strict=True)]
            row["accuracy_difference"] = (row["toolkit"]["accuracy"]["median"]
                                          - row["reference"]["accuracy"]["median"])
            models[name] = row

    summary = {
        "device": args.device, "device_name": device_name(device),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "batch": args.batch, "steps": args.steps, "train_images": n_train,
        "test_images": n_test, "seeds": args.seeds, "workers": args.workers,
        "warmup_steps": args.warmup_steps,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "compile": args.compile, "load_average_1_5_15": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "command": "python benchmarks/train_throughput.py " + shlex.join(argv or sys.argv[1:]),
        "models": models,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    plot(summary, out.with_suffix(".png"))
    if args.json:
        print(json.dumps(summary))
    else:
        for name, row in models.items():
            print(f"{name:26s} toolkit {row['toolkit']['imgs_per_s']['median']:8.1f} img/s, "
                  f"reference {row['reference']['imgs_per_s']['median']:8.1f} img/s, "
                  f"ratio {row['ratio']:.2f}; accuracy {row['toolkit']['accuracy']['median']:.3f}"
                  f" vs {row['reference']['accuracy']['median']:.3f}")
    return summary


if __name__ == "__main__":
    main()
