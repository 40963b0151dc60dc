"""Build the PyTorch module a spec describes.

The model is ``stem -> stages -> head`` with module names ``stem``,
``stages.{i}.{j}`` (block j of stage i) and ``head``, so state-dict keys follow
the spec's structure. Blocks keep their own initialisation (no global re-init
after the build: ACmix's shift-initialised kernels must survive it).
"""

from __future__ import annotations

import torch
from torch import nn

from convattn import create_block

from .validate import ResolvedSpec

# Specs arrive as arguments (ModelSpec.build() calls build_model): no import of the
# spec module here.


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of every pixel of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_stem(stem: dict, in_ch: int) -> nn.Module:
    """conv k x k (bias only without norm) [-> BN] [-> ReLU] [-> 3x3/2 max-pool]."""
    if stem["kind"] == "none":
        return nn.Identity()
    layers: list[nn.Module] = [nn.Conv2d(in_ch, stem["channels"], stem["kernel"], stem["stride"],
                                         stem["padding"], bias=stem["norm"] == "none")]
    if stem["norm"] == "batch":
        layers.append(nn.BatchNorm2d(stem["channels"]))
    if stem["act"] == "relu":
        layers.append(nn.ReLU(inplace=True))
    if stem["pool"] == "max":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "gelu": nn.GELU, "none": nn.Identity}


def hidden_layers(hidden: list[dict], channels: int) -> nn.Sequential:
    """The head's hidden layers: Linear(width) -> act [-> dropout] for each."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(channels, h["width"]), ACTIVATIONS[h["act"]]()]
        if h["dropout"]:
            layers.append(nn.Dropout(h["dropout"]))
        channels = h["width"]
    return nn.Sequential(*layers)


def head_widths(head: dict, channels: int, classes: int) -> list[int]:
    """Widths along the head's linear layers: channels, hidden widths..., classes."""
    return [channels, *(h["width"] for h in head.get("hidden", ())), classes]


class Head(nn.Module):
    """[norm] [-> ReLU] -> global average pool -> [dropout] -> [hidden layers] ->
    Linear(classes). ``hidden`` exists only when the spec has hidden layers, so a
    head without them keeps the state-dict keys of version 1 specs."""

    def __init__(self, head: dict, channels: int, classes: int):
        super().__init__()
        norms = {"batch": lambda: nn.BatchNorm2d(channels),
                 "layer": lambda: ChannelLayerNorm(channels), "none": nn.Identity}
        self.norm = norms[head["norm"]]()
        self.act = nn.ReLU(inplace=True) if head["act"] == "relu" else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(head["dropout"]) if head["dropout"] else nn.Identity()
        widths = head_widths(head, channels, classes)
        if head.get("hidden"):
            self.hidden = hidden_layers(head["hidden"], channels)
        self.fc = nn.Linear(widths[-2], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(self.act(self.norm(x))).flatten(1))
        if hasattr(self, "hidden"):
            x = self.hidden(x)
        return self.fc(x)


class SpecModel(nn.Module):
    """The network of ``spec``: input (B, C, H, W) -> logits (B, classes)."""

    def __init__(self, spec, resolved: ResolvedSpec):
        super().__init__()
        self.spec = spec
        self.stem = make_stem(resolved.stem, resolved.input_shape[0])
        stages: list[nn.Sequential] = []
        blocks = iter(resolved.blocks)
        for stage in spec.stages:
            modules = []
            for _ in stage.blocks:
                b = next(blocks)
                modules.append(create_block(b.type, b.in_ch, b.out_ch, b.stride, **b.given,
                                            input_size=b.in_size))
            stages.append(nn.Sequential(*modules))
        self.stages = nn.ModuleList(stages)
        self.head = Head(resolved.head, resolved.feature_shape[0], resolved.classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map, (B, C, H, W), before the head."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_model(spec) -> SpecModel:
    """Validate ``spec`` (a ModelSpec: SpecError before any tensor exists) and build
    it."""
    return SpecModel(spec, spec.validate().resolve())
