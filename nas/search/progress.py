"""The live display of a running search.

One line says where the search stands: trials done (complete, infeasible, stopped,
failed, duplicates), running, budget spent and left, best primary objective so far and
the size of the feasible Pareto front. On a terminal it is one line rewritten in place
(at most a few times a second); otherwise (a log file, CI) a plain line is printed each
time a trial finishes, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..budget import Budget


class Progress:
    def __init__(self, budget: Budget, primary: str, *, stream: TextIO | None = None,
                 tty: bool | None = None, min_interval: float = 0.25):
        self.budget = budget
        self.primary = primary
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.min_interval = min_interval
        self._last_time = 0.0
        self._last_told: int | None = None
        self._width = 0

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its config (callbacks included) into the experiment folder;
        # a stream cannot be pickled and the copy is never shown.
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def line(self, snap: dict[str, Any]) -> str:
        """The status line for the core's snapshot (SearchCore.snapshot())."""
        b = self.budget
        if b.kind == "trials":
            budget = f"budget {int(snap['told'])}/{int(b.limit)} trials"
        else:
            budget = (f"budget {b.format(snap['spent'])} of {b.format(b.limit)} "
                      f"({b.format(snap['left'])} left)")
        best = snap.get("best")
        best_text = (f"best {self.primary} {best[1]:.4g} (#{best[0]})" if best
                     else f"best {self.primary} -")
        return (f"trials {snap['told']} done: {snap['complete']} ok, "
                f"{snap['infeasible']} infeasible, {snap['stopped']} stopped, "
                f"{snap['failed']} failed, {snap['duplicate']} dup | "
                f"{snap['running']} running | {budget} | {best_text} | "
                f"front {snap['front']}")

    def update(self, snap: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if not force and now - self._last_time < self.min_interval:
                return
            text = self.line(snap)
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            if not force and snap["told"] == self._last_told:
                return
            self.stream.write(self.line(snap) + "\n")
        self._last_time, self._last_told = now, snap["told"]
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (the status line is redrawn after it on a terminal)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
