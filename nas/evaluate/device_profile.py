"""Device profiles: what a training step costs on one device, as data, so that a search
for a GPU can be priced on a laptop.

A profile (YAML, written by ``nas profile-device`` on the device it describes, see
:mod:`nas.evaluate.profile_measure`) holds:

- ``device``: type, name, torch and CUDA versions, the date, threads (CPU);
- ``setting``: precision, channels-last, optimizer and the batch the points were timed at;
- ``overhead_s``: the fixed cost of one training step of a trivial model (zero_grad,
  loss, backward bookkeeping, optimizer step, kernel launches);
- ``blocks``: per block type (and attention kernel, ``aa:relative``), measured points
  ``{map, channels, macs, seconds}``: one training step of that block alone at
  ``setting.batch`` (seconds minus ``overhead_s``), over a grid of map sizes and
  channels; ``stem`` is the usual conv stem;
- ``memory``: the device's memory, the per-process context, and the ratio of measured
  peak training memory to the cost model's estimate (the memory rule:
  ``need = estimate x ratio + context``; trials per GPU as :mod:`nas.evaluate.cluster` counts).

:func:`predict_step_s` prices a spec at a batch: ``overhead_s`` + the stem + for every
block its type's time at the block's work (MACs x batch), interpolated log-log between
the measured points (beyond the largest point time grows linearly with the work; below
the smallest it follows the first segment's slope, at most linearly, at least flat).
benchmarks/profile_fidelity.py measures how close that is to real step times.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

PROFILE_VERSION = 1
#: shipped profiles: nas/profiles/<name>.yaml
PACKAGED = Path(__file__).resolve().parents[1] / "profiles"
#: the time a block point may not go below after subtracting the fixed overhead.
MIN_POINT_S = 1e-6


# --------------------------------------------------------------------------- files
def list_profiles() -> list[str]:
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def profile_path(ref: str | Path) -> Path:
    """A profile file from a path or the name of a shipped profile (UserError if none)."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    packaged = PACKAGED / f"{ref}.yaml"
    if packaged.is_file():
        return packaged
    known = ", ".join(list_profiles()) or "none"
    raise UserError(f"device profile {str(ref)!r}: no such file and no shipped profile of "
                    f"that name (shipped: {known}); measure one with nas profile-device "
                    "on the device")


def load_profile(ref: str | Path) -> dict[str, Any]:
    """Read and check a profile (UserError naming what is wrong)."""
    path = profile_path(ref)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"device profile {path}: not valid YAML ({err})") from None
    where = f"device profile {path}"
    if not isinstance(raw, dict) or raw.get("kind") != "device-profile":
        raise UserError(f"{where}: not a device profile (no 'kind: device-profile')")
    if raw.get("version") != PROFILE_VERSION:
        raise UserError(f"{where}: version {raw.get('version')!r}, this nas reads "
                        f"version {PROFILE_VERSION}")
    if raw.get("complete") is False:
        missing = [c for c in raw.get("curves", []) if c not in raw.get("blocks", {})]
        raise UserError(f"{where}: a partial profile ({len(missing)} curves and the memory "
                        f"rule still to measure, from {missing[0] if missing else '?'}); "
                        f"finish it on its device: nas profile-device --out {path}")
    for key in ("device", "setting", "overhead_s", "blocks", "memory"):
        if key not in raw:
            raise UserError(f"{where}: missing {key!r}")
    for key, points in raw["blocks"].items():
        if not isinstance(points, list) or not points or not all(
                isinstance(p, dict) and p.get("macs", 0) > 0 and p.get("seconds", 0) > 0
                for p in points):
            raise UserError(f"{where}: blocks.{key} is not a list of {{macs, seconds}} "
                            "points with positive values")
    raw["path"] = str(path)
    return raw


def read_partial(path: str | Path) -> dict[str, Any] | None:
    """The partial profile (``complete: false``) at ``path`` that ``nas profile-device``
    continues; None when there is none (no file, or a file of any other kind, which a new
    profile replaces)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if (not isinstance(raw, dict) or raw.get("kind") != "device-profile"
            or raw.get("complete") is not False or not isinstance(raw.get("blocks"), dict)):
        return None
    return {**raw, "path": str(path)}


def profile_yaml(profile: dict[str, Any]) -> str:
    """The profile as the YAML text a profile file holds."""
    return yaml.safe_dump({k: v for k, v in profile.items() if k != "path"}, sort_keys=False)


def describe(profile: dict[str, Any]) -> str:
    d, s = profile["device"], profile["setting"]
    cuda = f", CUDA {d['cuda']}" if d.get("cuda") else ""
    return (f"{d['name']} ({d['type']}, {s['precision']}, measured {d['date']}, torch "
            f"{d['torch']}{cuda})")


# --------------------------------------------------------------------------- predicting
def block_key(node: dict[str, Any], profile: dict[str, Any]) -> str:
    """The profile curve of a graph node: ``type:attention`` when measured, else type."""
    attention = node.get("cfg", {}).get("attention")
    keyed = f"{node['type']}:{attention}"
    if attention and keyed in profile["blocks"]:
        return keyed
    if node["type"] in profile["blocks"]:
        return node["type"]
    same_type = sorted(k for k in profile["blocks"] if k.split(":")[0] == node["type"])
    if same_type:
        return same_type[0]
    raise UserError(f"device profile {profile.get('path', '')}: no measurements of block "
                    f"type {node['type']!r}; measure the profile again with this nas")


def curve_seconds(points: list[dict[str, Any]], work: float, batch: int) -> float:
    """Seconds of one step of a block with ``work`` MACs (x images) from its points
    (each measured at ``batch`` images): log-log interpolation, linear beyond the last
    point; below the first, the first segment's log-log slope clamped to [0, 1] (0:
    launch-bound, flat; 1: still proportional to the work)."""
    pts = sorted((p["macs"] * batch, p["seconds"]) for p in points)
    if work <= pts[0][0]:
        if len(pts) < 2 or pts[1][0] == pts[0][0]:
            return pts[0][1]
        (w0, s0), (w1, s1) = pts[0], pts[1]
        slope = min(1.0, max(0.0, math.log(s1 / s0) / math.log(w1 / w0)))
        return s0 * (work / w0) ** slope
    if work >= pts[-1][0]:
        return pts[-1][1] * work / pts[-1][0]
    for (w0, s0), (w1, s1) in zip(pts, pts[1:], strict=False):
        if w0 <= work <= w1:
            if w1 == w0:
                return max(s0, s1)
            t = (math.log(work) - math.log(w0)) / (math.log(w1) - math.log(w0))
            return math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))
    return pts[-1][1]  # not reached


def predict_step_s(spec: Any, profile: dict[str, Any], batch: int) -> dict[str, Any]:
    """Predicted seconds of one training step of ``spec`` at ``batch`` on the profile's
    device, its parts (overhead, stem, blocks), and ``beyond_measured_x``: how far the
    largest block's work lies beyond its curve's largest measured point (1 = within)."""
    graph = spec.graph(costs=True)
    base = int(profile["setting"]["batch"])

    beyond = [1.0]  # the largest work / the largest measured point's work

    def seconds(key: str, macs: int) -> float:
        largest = max(p["macs"] for p in profile["blocks"][key]) * base
        beyond[0] = max(beyond[0], macs * batch / largest)
        return curve_seconds(profile["blocks"][key], macs * batch, base)

    parts = {"overhead": float(profile["overhead_s"]), "stem": 0.0, "blocks": 0.0}
    for name, node in graph.nodes(data=True):
        if name == "stem" and node["macs"] and "stem" in profile["blocks"]:
            parts["stem"] = seconds("stem", int(node["macs"]))
        elif node["type"] not in ("input", "stem", "head", "output"):
            parts["blocks"] += seconds(block_key(node, profile), int(node["macs"]))
    return {"step_s": sum(parts.values()), **{f"{k}_s": v for k, v in parts.items()},
            "beyond_measured_x": beyond[0]}


def predicted_peak_bytes(estimate_bytes: float, profile: dict[str, Any]) -> float:
    """The memory rule: the cost model's training-memory estimate times the measured
    ratio (peak reserved / estimate) on the profile's device."""
    return float(estimate_bytes) * float(profile["memory"]["peak_over_estimate"])


def trials_per_device(estimate_bytes: float, profile: dict[str, Any]) -> int:
    """Trials of that estimated memory that fit on one of the profile's devices."""
    from .cluster import trials_per_gpu_for

    mem = profile["memory"]
    return trials_per_gpu_for(predicted_peak_bytes(estimate_bytes, profile),
                              float(mem["device_bytes"]),
                              context_bytes=float(mem["context_bytes"]))
