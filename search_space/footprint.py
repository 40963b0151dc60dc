"""Training-memory accounting shared by the cost model and the device measurement.

Peak training memory is dominated by four terms: the activations autograd saves
for the backward pass, the parameters, their gradients and the optimizer state.
The saved activations are counted exactly, without guessing which layer keeps
what, by running a forward pass under ``torch.autograd.graph.saved_tensors_hooks``
and summing the bytes of every distinct storage that autograd packs. Storages
are deduplicated (a tensor and its views share one storage) and parameter /
buffer storages are left out (they are counted once as parameters and buffers).

On the ``meta`` device this costs no compute and no memory, which is what the
cost model uses; on a real device the same count is a measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

#: optimizer name -> (number of per-parameter state buffers, description).
OPTIMIZERS: dict[str, tuple[int, str]] = {
    "sgd": (0, "SGD without momentum: no state"),
    "sgd_momentum": (1, "SGD with momentum: one momentum buffer per parameter"),
    "adamw": (2, "AdamW: exp_avg and exp_avg_sq per parameter"),
}


def optimizer_buffers(name: str) -> int:
    """Per-parameter state buffers kept by optimizer ``name``; ValueError lists the known."""
    try:
        return OPTIMIZERS[name][0]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """The optimizer ``name`` with lr 0, so a measured step costs what a real step
    costs but leaves the weights unchanged."""
    optimizer_buffers(name)  # validates the name
    if name == "adamw":
        return torch.optim.AdamW(params, lr=0.0)
    return torch.optim.SGD(params, lr=0.0, momentum=0.9 if name == "sgd_momentum" else 0.0)


def storage_key(t: torch.Tensor) -> int:
    """Identity of the storage behind ``t`` (shared by all its views); works on meta."""
    return t.untyped_storage()._cdata


def storage_bytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            seen.setdefault(storage_key(t), storage_bytes(t))
    return sum(seen.values())


class SavedTensorCounter:
    """Counts the bytes autograd saves for backward, one count per storage."""

    def __init__(self, exclude: set[int] | None = None):
        self.exclude = set(exclude or ())
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = storage_key(t)
        if key not in self.exclude:
            self.storages.setdefault(key, storage_bytes(t))
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    @contextmanager
    def active(self) -> Iterator[SavedTensorCounter]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
            yield self


def module_storages(model: nn.Module) -> set[int]:
    """Storage keys of every parameter and buffer of ``model``."""
    return {storage_key(t) for t in (*model.parameters(), *model.buffers())}


def saved_activation_bytes(model: nn.Module, x: torch.Tensor,
                           forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]
                           | None = None) -> tuple[int, torch.Tensor]:
    """Bytes autograd saves during one forward of ``model`` on ``x`` (parameters and
    buffers excluded), and the output. ``x`` is counted when a layer saves it."""
    counter = SavedTensorCounter(module_storages(model))
    with counter.active():
        out = forward(model, x) if forward is not None else model(x)
    return counter.bytes, out


@dataclass(frozen=True)
class Footprint:
    """The terms of peak training memory, in bytes, for one training step."""

    activations: int
    params: int
    grads: int
    optimizer_state: int
    buffers: int
    optimizer: str

    @property
    def total(self) -> int:
        return self.activations + self.params + self.grads + self.optimizer_state + self.buffers

    def to_dict(self) -> dict:
        return {"activation_bytes": self.activations, "param_bytes": self.params,
                "grad_bytes": self.grads, "optimizer_state_bytes": self.optimizer_state,
                "buffer_bytes": self.buffers, "optimizer": self.optimizer,
                "train_memory_bytes": self.total}


def analytic_footprint(model: nn.Module, activations: int, optimizer: str) -> Footprint:
    """Footprint from a counted activation total and the module's own tensors:
    gradients as large as the trainable parameters, ``optimizer_buffers`` copies
    of them as optimizer state."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = tensor_bytes(model.parameters())
    grads = tensor_bytes(trainable)
    return Footprint(activations=activations, params=params, grads=grads,
                     optimizer_state=grads * optimizer_buffers(optimizer),
                     buffers=tensor_bytes(model.buffers()), optimizer=optimizer)
