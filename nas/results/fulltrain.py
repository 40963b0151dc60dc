"""Full-length training of one chosen architecture, resumable after a kill.

``full_train(spec, study, out_dir=...)`` trains a spec (a zoo name, an exported file or a
ModelSpec; its input and classes adapted to the study's data) on the study's training
split with the study's optimiser and schedule run over ``epochs`` whole epochs (no
``max_steps_per_epoch`` cut, no early stopping), evaluating on the study's validation
split after every epoch. It reuses :func:`nas.evaluate.train.train` through its ``checkpoint``
hook (:class:`FileCheckpointer`) rather than a loop of its own.

Files in ``out_dir``::

    checkpoint.pt   after every epoch, written atomically (temp file + rename, so a kill
                    mid-write leaves the previous one): model, optimizer and scheduler
                    state, the epoch, the RNG states (torch, CUDA, Python, NumPy and the
                    data-order generator) and the history; plain tensors and containers,
                    so ``torch.load(path, weights_only=True)`` reads it
    spec.yaml       the spec actually trained (adapted to the data)
    model.pt        the final weights (state_dict; weights_only loadable)
    metrics.json    the final metrics, history, provenance and the epochs resumed from

Started again with the same ``out_dir`` it finds ``checkpoint.pt`` and continues after
the saved epoch: with the RNG states restored, a resumed CPU run ends with the same
weights as an uninterrupted one. A checkpoint of a different run (another spec, study,
seed or epoch count) is refused rather than silently mixed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from ..errors import UserError
from ..study import Study, load_study
from ..study.study import adapt_spec

CHECKPOINT = "checkpoint.pt"
FINAL_WEIGHTS = "model.pt"
METRICS = "metrics.json"
SPEC = "spec.yaml"
#: version of the checkpoint layout.
CHECKPOINT_FORMAT = 1


def resolve_study(ref: str | os.PathLike | Study | None) -> Study:
    """A study: a Study, a study file or packaged name, or a run directory (its saved
    study.yaml)."""
    if isinstance(ref, Study):
        return ref
    if ref is not None and Path(ref).is_dir():
        from ..run.rundir import RunDir

        return load_study(RunDir.open(ref).study_dict())
    return load_study(ref)


class FileCheckpointer:
    """:class:`nas.evaluate.train.Checkpointer` that keeps one ``checkpoint.pt`` in a folder."""

    def __init__(self, out_dir: Path, identity: dict[str, Any], stream: TextIO | None = None):
        self.path = Path(out_dir) / CHECKPOINT
        self.identity = identity
        self.stream = stream
        self.resumed_from: list[int] = []

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a corrupt file is the user's to remove
            raise UserError(f"{self.path}: cannot read the checkpoint ({err}); delete it "
                            "to start over") from None
        mine = {k: state.get(k) for k in self.identity}
        if mine != self.identity:
            diff = ", ".join(f"{k} {mine[k]!r} != {v!r}" for k, v in self.identity.items()
                             if mine[k] != v)
            raise UserError(f"{self.path} belongs to another training run ({diff}); use "
                            "another --out or delete the checkpoint")
        return state

    def restore(self, parts: dict[str, Any]) -> int:
        state = self.load()
        if state is None:
            return 0
        parts["model"].load_state_dict(state["model"])
        parts["optimizer"].load_state_dict(state["optimizer"])
        parts["scheduler"].load_state_dict(state["scheduler"])
        parts["history"][:] = state["history"]
        _set_rng(state["rng"], parts["generator"])
        self.resumed_from = [*state.get("resumed_from", []), int(state["epoch"])]
        if self.stream is not None:
            print(f"resuming from {self.path} after epoch {state['epoch']}", file=self.stream)
        return int(state["epoch"])

    def save(self, epoch: int, parts: dict[str, Any]) -> None:
        state = {**self.identity, "format": CHECKPOINT_FORMAT, "epoch": epoch,
                 "model": parts["model"].state_dict(),
                 "optimizer": parts["optimizer"].state_dict(),
                 "scheduler": parts["scheduler"].state_dict(),
                 "history": list(parts["history"]), "rng": _get_rng(parts["generator"]),
                 "resumed_from": list(self.resumed_from), "time": time.time()}
        atomic_save(state, self.path)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file, then rename: a kill mid-write keeps the old file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _get_rng(generator: torch.Generator) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
                           "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        rng["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                        int(has_gauss), float(cached)]
    except ImportError:
        pass
    return rng


def _set_rng(rng: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "numpy" in rng:
        import numpy as np

        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _fingerprint(cfg: Any) -> str:
    """Short hash of the training config except the epoch count (reported on its own)."""
    import hashlib

    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "epochs"}
    text = json.dumps(d, sort_keys=True, default=str)
    return "config-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def full_train(spec: Any, study: str | os.PathLike | Study | None, *,
               out_dir: str | os.PathLike, epochs: int | None = None,
               data_dir: str | os.PathLike | None = None, device: str = "auto",
               seed: int = 0, stream: TextIO | None = None,
               log_interval: int = 0) -> dict[str, Any]:
    """Train (or resume training) ``spec`` on ``study``'s data; returns the final metrics
    (also written to ``out_dir/metrics.json``). ``stream``: progress lines (default
    stderr; pass ``open(os.devnull, "w")`` for none): what is trained how, a line every
    ``log_interval`` steps within an epoch (0: none) and one after each epoch."""
    from ..evaluate.candidates import fmt_count
    from ..evaluate.data import cached_data
    from ..evaluate.train import (
        Diverged,
        resolve_device,
        resolve_precision,
        seed_everything,
        steps_per_epoch,
        train,
    )

    stream = sys.stderr if stream is None else stream
    study = resolve_study(study)
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise UserError(f"--epochs {epochs}: a positive int is required")
    spec = adapt_spec(spec, study)
    cfg = dataclasses.replace(study.training, epochs=epochs or study.training.epochs,
                              max_steps_per_epoch=None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    bundle = cached_data(study.data, data_dir)
    study.check_data(bundle)
    dev = resolve_device(device)
    identity = {"spec_hash": spec.hash(), "study": study.name, "seed": seed,
                "epochs": cfg.epochs, "training": _fingerprint(cfg)}
    ckpt = FileCheckpointer(out, identity, stream)
    ckpt.load()  # refuse a foreign checkpoint before any work
    (out / SPEC).write_text(spec.to_yaml())
    seed_everything(seed)
    model = spec.build()
    per_epoch = steps_per_epoch(len(bundle.train), cfg)
    print(f"training {spec.name} ({fmt_count(sum(p.numel() for p in model.parameters()))} "
          f"params) on {study.name} ({len(bundle.train)} training / {len(bundle.val)} "
          f"validation images): {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} of {per_epoch} "
          f"steps at batch {cfg.batch_size} on {dev} "
          f"({resolve_precision(cfg.precision, dev)}), checkpoints in {out}",
          file=stream, flush=True)
    first_step_done = [0.0]  # perf_counter at the end of this epoch's first step

    def step_line(epoch: int, step: int, steps: int) -> None:
        # Timed from the end of each epoch's first step: the rate leaves out its warm-up.
        if step == 1:
            first_step_done[0] = time.perf_counter()
        elif log_interval and step % log_interval == 0 and step < steps:
            rate = (time.perf_counter() - first_step_done[0]) / (step - 1)
            print(f"epoch {epoch}/{cfg.epochs}  step {step}/{steps}  {rate:.2f} s/step, "
                  f"~{rate * (steps - step):.0f} s to the epoch's end", file=stream,
                  flush=True)

    def report(epoch: int, m: dict[str, Any]) -> None:
        print(f"epoch {epoch}/{cfg.epochs}  accuracy {m['accuracy']:.4f}  train_loss "
              f"{m['train_loss']:.4f}  val_loss {m['val_loss']:.4f}  ({m['epoch_s']:.1f} s)",
              file=stream, flush=True)

    try:
        result = train(model, bundle, cfg, device=dev, seed=seed, on_epoch=report,
                       on_step=step_line, workers=study.data.workers, checkpoint=ckpt)
    except Diverged as err:
        raise UserError(f"training diverged: {err}; the last good state is in "
                        f"{ckpt.path}") from None
    atomic_save(model.state_dict(), out / FINAL_WEIGHTS)
    history = result.history
    last = history[-1] if history else {}
    metrics = {
        "spec": spec.name, "hash": spec.hash(), "study": study.name,
        "epochs": cfg.epochs, "epochs_done": result.epochs_done,
        "accuracy": last.get("accuracy"), "val_loss": last.get("val_loss"),
        "train_loss": last.get("train_loss"),
        "best_accuracy": max((h["accuracy"] for h in history), default=None),
        "params": sum(p.numel() for p in model.parameters()),
        "resumed_from": ckpt.resumed_from, "history": history,
        "provenance": {"device": str(dev), "torch": torch.__version__,
                       "precision": resolve_precision(cfg.precision, dev),
                       "batch_size": cfg.batch_size, "seed": seed,
                       "threads": torch.get_num_threads()},
        "files": {"checkpoint": str(ckpt.path), "weights": str(out / FINAL_WEIGHTS),
                  "spec": str(out / SPEC)},
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics
