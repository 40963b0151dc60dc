"""The Ray Tune callback that connects Tune's trial events to the searcher, the run
directory's wall clock and the live display. Imported only inside run_search (Ray)."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from ..run.rundir import RunDir
from .progress import Progress


class SearchCallback(Callback):
    """Forwards attempt starts, results and worker failures to the NasSearcher (Tune
    calls a Searcher only for a trial's final end, not for an attempt Ray retries)."""

    def __init__(self, searcher: Any, run: RunDir, progress: Progress | None,
                 session: int, on_first_start: Any = None, tick_s: float = 1.0):
        self.searcher = searcher
        self.run = run
        self.progress = progress
        self.session = session
        self.started = time.time()
        self.on_first_start = on_first_start
        self.tick_s = tick_s
        self._last_tick = 0.0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.searcher.attempt_started(trial.trial_id)
        if self.on_first_start is not None:
            hook, self.on_first_start = self.on_first_start, None
            hook()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info) -> None:
        self.searcher.record_result(trial.trial_id, result)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.searcher.attempt_failed(trial.trial_id, error_text(trial), final=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.searcher.attempt_failed(trial.trial_id, error_text(trial), final=True)
        self._show(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._show(force=True)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.time()
        if now - self._last_tick >= self.tick_s:
            self._last_tick = now
            self.run.tick(self.session, self.started)
        self._show()

    def _show(self, force: bool = False) -> None:
        if self.progress is not None:
            self.progress.update(self.searcher.snapshot(), force=force)


def error_text(trial: Any, limit: int = 300) -> str:
    """The first meaningful line of a Ray trial's error."""
    text = None
    try:
        text = trial.get_error()
    except Exception:  # noqa: BLE001 - the message is best effort; the failure is recorded
        text = None
    if not text and getattr(trial, "error_file", None):
        try:
            with open(trial.error_file) as fh:
                text = fh.read()
        except OSError:
            text = None
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("Failure #"):
            return line[:limit]
    return "the trial's worker failed (no error text)"
