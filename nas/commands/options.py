"""Options shared by several verbs, so that each is spelled, checked and explained the
same way everywhere: the output file, the device, seeds and counts. Bad values are
refused by argparse itself (one line, exit 2) before anything runs or is written."""

from __future__ import annotations

import argparse
import re

SEED_MAX = 2**32 - 1
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def seed(text: str) -> int:
    """A seed as NumPy and Optuna's samplers accept it: an int in 0..2**32-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is not a seed: seeds are integers "
                                         f"from 0 to 2**32-1 ({SEED_MAX})")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def significance(text: str) -> float:
    """A significance level: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (e.g. 0.05)")
    return value


def device(text: str) -> str:
    """The spelling only (auto, cpu, cuda, cuda:N); whether this machine has that device
    is checked where it is used (``nas.evaluate.train.resolve_device``)."""
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; allowed: auto, cpu, "
                                         "cuda, cuda:N")
    return text


def add_device(p: argparse.ArgumentParser, what: str = "models run") -> None:
    p.add_argument("--device", default="auto", type=device, metavar="D",
                   help=f"where the {what}: auto (CUDA if present, else CPU), cpu, cuda, "
                        "cuda:N")


def add_output(p: argparse.ArgumentParser, *, metavar: str, help: str,
               required: bool = False, old_alias: bool = False) -> None:
    """``-o/--output`` (plus ``--out``, the spelling older releases had, where
    ``old_alias``)."""
    names = ["-o", "--output", *(["--out"] if old_alias else [])]
    p.add_argument(*names, dest="output", required=required, metavar=metavar, help=help)
