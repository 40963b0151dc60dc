"""The evaluations ``nas rank`` has finished, kept so that a ranking survives Ctrl-C.

A ranking is dozens of proxy trainings in one process (hours on a CPU); each finished
evaluation is appended to RUN_DIR/rank_evals.jsonl as one line, and the next ``nas rank``
on the run re-uses every evaluation that was made under the same protocol instead of
training again: after an interruption the same command continues where it stopped, and
``--seeds 5`` after ``--seeds 3`` trains only seeds 3 and 4.

An evaluation is re-used only when all that decides its numbers is the same: the
architecture (spec hash), the seed, whether it was trained as a comparison (a baseline
over the study's limits is trained anyway), the study's data, training, measurement,
limits, objectives and threads per trial, the device and the torch version. Anything else
(an edited study, another GPU) evaluates afresh; the old lines stay, harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

RANK_EVALS = "rank_evals.jsonl"


def protocol_key(study: Any, device: str, device_name: str, torch_version: str) -> str:
    """A digest of everything besides the architecture and seed that decides an
    evaluation's numbers (see the module docstring)."""
    d = study.to_dict()
    decisive = {k: d[k] for k in ("data", "training", "measure", "constraints",
                                  "objectives")}
    decisive["cpus_per_trial"] = d["resources"].get("cpus_per_trial")
    decisive.update(device=device, device_name=device_name, torch=torch_version)
    text = json.dumps(decisive, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RankLog:
    """RUN_DIR/rank_evals.jsonl: ``get`` a finished evaluation, ``add`` a new one."""

    def __init__(self, run_dir: Path, protocol: str):
        self.path = Path(run_dir) / RANK_EVALS
        self.protocol = protocol
        self._done: dict[tuple[str, int, bool], dict[str, Any]] = {}
        for entry in self._read():
            if entry.get("protocol") == protocol:
                key = (entry["hash"], int(entry["seed"]), bool(entry["comparison"]))
                self._done[key] = entry

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: not an evaluation
                continue
            if isinstance(entry, dict) and {"hash", "seed", "comparison", "run"} <= entry.keys():
                out.append(entry)
        return out

    def get(self, spec_hash: str, seed: int, comparison: bool) -> dict[str, Any] | None:
        """The saved entry (``run``, ``provenance``, ``latency``) or None."""
        return self._done.get((spec_hash, seed, comparison))

    def add(self, spec_hash: str, seed: int, comparison: bool, run: dict[str, Any],
            provenance: dict[str, Any], latency: dict[str, Any]) -> None:
        """Append one finished evaluation, flushed to disk before returning."""
        entry = {"protocol": self.protocol, "hash": spec_hash, "seed": seed,
                 "comparison": comparison, "run": run, "provenance": provenance,
                 "latency": latency}
        with self.path.open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._done[(spec_hash, seed, comparison)] = entry
