"""What the search core knows of the trials already told: counts, the architectures
evaluated (the dedup map and the record a duplicate copies), the costs that predict the
next trial's, and the live front.

Filled from the storage when a session starts and updated on every tell, so a resumed
search deduplicates against, and prices from, every earlier session. Ray-free.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from optuna.trial import TrialState

from ..run.dominance import Front
from .outcome import TRAINED

#: user attributes a duplicate copies from the trial that evaluated its architecture.
COPIED = ("metrics", "violations", "epochs_done", "placeholders", "spec", "curve", "kind")


class History:
    """The told trials of one search, as the core needs them."""

    def __init__(self, directions: list[str]):
        self.told = 0
        self.counts: Counter[str] = Counter()
        self.done: dict[str, int] = {}  # hash -> number of the trial that evaluated it
        # number -> (state, values, constraints, attrs) of each evaluated architecture
        self.records: dict[int, tuple] = {}
        # kept sorted: the budget takes their median at every ask (sorting an unsorted
        # list each time was 0.5 ms per ask at 4,000 trials)
        self.trained_walls: list[float] = []
        self.all_walls: list[float] = []
        self.front = Front(directions)
        self.best: tuple[int, float] | None = None

    def load(self, trials: list[Any]) -> None:
        for t in trials:
            if t.state.is_finished():
                self.note(t.number, t.state, t.values, t.constraints, t.user_attrs)

    def note(self, number: int, state: TrialState, values: Any,
             constraints: dict[str, float], attrs: dict[str, Any]) -> None:
        """Count one told trial; remember its architecture, cost and place on the front."""
        status = attrs.get("status")
        self.counts["duplicates_skipped"] += int(attrs.get("duplicates_skipped", 0))
        if status == "interrupted":  # re-run later: neither told nor evaluated
            self.counts["interrupted"] += 1
            return
        self.told += 1
        h = attrs.get("hash")
        if h and attrs.get("duplicate_of") is None and h not in self.done:
            self.done[h] = number
            self.records[number] = (state, values, dict(constraints),
                                    {k: attrs[k] for k in (*COPIED, "status") if k in attrs})
        if attrs.get("duplicate_of") is not None:
            self.counts["duplicate"] += 1
            return
        if "wall_s" in attrs and status not in (None, "invalid"):
            bisect.insort(self.all_walls, float(attrs["wall_s"]))
            if status in TRAINED:
                bisect.insort(self.trained_walls, float(attrs["wall_s"]))
        feasible = all(v <= 0 for v in constraints.values())
        if state == TrialState.COMPLETE:
            self.counts["complete" if feasible else "infeasible"] += 1
            if feasible and values is not None:
                self.front.add(number, values, baseline=attrs.get("kind") == "baseline")
                best = self.front.best()  # found trials only; a baseline may beat them
                self.best = (best[0], best[1][0]) if best else None
        elif state == TrialState.PRUNED:
            self.counts["stopped"] += 1
        else:
            self.counts["failed"] += 1
