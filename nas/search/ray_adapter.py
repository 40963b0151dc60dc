"""Ray Tune drives the search core: a Searcher, a scheduler and a callback, nothing more.

- :class:`CoreSearcher` (Tune's ``search_alg``): ``suggest`` is the core's ``propose`` and
  ``on_trial_complete`` its ``finished``. Ray's own OptunaSearch passes only objective
  values back and keeps an in-memory study; the core keeps the study in the run's storage
  and tells Optuna everything a result page needs.
- :class:`CoreAsha` (Tune's ``scheduler``): the one ASHA rule (:mod:`nas.search.asha`) on
  each per-epoch report; a trial it stops is told PRUNED by the core.
- :class:`CoreCallback`: attempt starts, per-epoch reports and worker failures (Tune calls
  a Searcher only for a trial's final end, not for an attempt it retries), the run's wall
  clock and the live display.

Imported only inside the driver's Ray session (these subclass Ray classes), so
``import nas`` does not load Ray.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from ..run.rundir import RunDir
from .asha import AshaRule
from .core import FINISHED, SearchCore
from .progress import Progress


class CoreSearcher(Searcher):
    """The core behind Tune's Searcher interface (Ray's trial id is the core's slot)."""

    def __init__(self, core: SearchCore):
        super().__init__(metric=None, mode=None)
        self.core = core

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space comes from the study, not from Tune's param_space

    def save(self, checkpoint_path: str) -> None:
        pass  # the state is the Optuna storage + ledger, persisted as trials finish

    def restore(self, checkpoint_path: str) -> None:
        pass

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = self.core.propose(trial_id)
        return Searcher.FINISHED if config == FINISHED else config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if not error:  # errors end through CoreCallback (with the message)
            self.core.finished(trial_id, result)


class CoreAsha(FIFOScheduler):
    """Stops the trials the ASHA rule stops; everything else is Tune's FIFO."""

    def __init__(self, rule: AshaRule, core: SearchCore):
        super().__init__()
        self.rule = rule
        self.core = core

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if self.rule.decide(trial.config or {}, result):
            self.core.stopped(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class CoreCallback(Callback):
    """Forwards attempt starts, results and worker failures to the core; ticks the run's
    wall clock and refreshes the live display."""

    def __init__(self, core: SearchCore, run: RunDir, progress: Progress | None,
                 session: int, on_first_start: Any = None, tick_s: float = 1.0):
        self.core = core
        self.run = run
        self.progress = progress
        self.session = session
        self.started = time.time()
        self.on_first_start = on_first_start
        self.tick_s = tick_s
        self._last_tick = 0.0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.core.started(trial.trial_id)
        if self.on_first_start is not None:
            hook, self.on_first_start = self.on_first_start, None
            hook()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info) -> None:
        self.core.reported(trial.trial_id, result)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.core.failed(trial.trial_id, error_text(trial), final=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.core.failed(trial.trial_id, error_text(trial), final=True)
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
            self.progress.update(self.core.snapshot(), force=force)


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
