"""The in-process executor: the search core's trials run in this process, no Ray.

A trial is a generator of reports (the per-epoch results, then ``final: True`` with the
outcome), the same reports the Ray trainable sends (:func:`nas.search.trainable.
trial_reports`). :func:`run_in_process` keeps ``workers`` trials going: it asks the core
for a config whenever a worker is free, hands each report to the core and to ASHA's rule
(:mod:`nas.search.asha`) in time order, and closes a trial's generator when ASHA stops it.

Two clocks:

- real (default): trials train here, one report at a time (:func:`training_trial`, which
  runs the real evaluation in a thread that waits at each report). ``nas search
  --executor local`` and the benchmarks use this; with one worker it is a plain loop;
- virtual (:class:`VirtualClock`): a report's time is its trial's start plus its
  ``trial_wall_s``, so trials that take a minute cost nothing to simulate; the driver's
  own time (each core call, measured) advances the clock too, because one driver serves
  every worker: a worker whose trial ended waits while the driver is busy. The scale
  benchmark (``benchmarks/driver_scale.py``) measures the driver this way.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .asha import AshaRule
from .core import FINISHED, WAIT, SearchCore

Trial = Callable[[dict[str, Any]], Iterator[dict[str, Any]]]


class VirtualClock:
    """Simulated seconds; ``charge`` adds the driver's measured work to them."""

    def __init__(self, start: float = 0.0):
        self.now = float(start)
        self.driver_s = 0.0

    def __call__(self) -> float:
        return self.now

    def charge(self, seconds: float) -> None:
        self.driver_s += seconds
        self.now += seconds


def run_in_process(core: SearchCore, trial: Trial, *, workers: int = 1,
                   asha: AshaRule | None = None, clock: VirtualClock | None = None,
                   on_step: Callable[[], None] | None = None) -> None:
    """Run the search until the core finishes it (budget, space, constraints, error).
    Trials still running when this returns (an exception, Ctrl-C) are left to the
    caller's ``core.close_session()``, which re-enqueues them."""
    heap: list[tuple[float, int, str]] = []  # (due time, order, slot)
    running: dict[str, dict[str, Any]] = {}
    order, slots = itertools.count(), itertools.count()

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if clock is None:
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock.charge(time.perf_counter() - t0)

    def end(slot: str) -> dict[str, Any]:
        state = running.pop(slot)
        state["reports"].close()
        return state

    def pull(slot: str) -> None:
        state = running[slot]
        try:
            report = next(state["reports"], None)
        except Exception as err:  # noqa: BLE001 - one trial's crash never ends a search
            end(slot)
            call(core.failed, slot, f"{type(err).__name__}: {err}", final=True)
            return
        if report is None:  # ended without a final report: nothing to tell but that
            end(slot)
            call(core.finished, slot, None)
            return
        state["report"] = report
        due = (state["start"] + float(report.get("trial_wall_s", 0.0)) if clock
               else time.time())
        heapq.heappush(heap, (due, next(order), slot))

    def fill() -> None:
        while len(running) < workers:
            slot = f"local-{next(slots):06d}"
            config = call(core.propose, slot)
            if config is WAIT or config == FINISHED:
                return
            call(core.started, slot)
            running[slot] = {"config": config, "reports": trial(config),
                             "start": clock() if clock else time.time()}
            pull(slot)

    try:
        while True:
            fill()
            if not heap:
                return
            due, _, slot = heapq.heappop(heap)
            if clock is not None:
                clock.now = max(clock.now, due)
            state = running[slot]
            report = state["report"]
            if report.get("final"):
                end(slot)
                call(core.finished, slot, report)
            else:
                call(core.reported, slot, report)
                if asha is not None and call(asha.decide, state["config"], report):
                    end(slot)
                    call(core.stopped, slot)
                    call(core.finished, slot, report)
                else:
                    pull(slot)
            if on_step is not None:
                on_step()
    finally:
        for slot in list(running):
            running.pop(slot)["reports"].close()


def training_trial(study: Any, data: Any, data_dir: str | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> Trial:
    """Trials that really train, here: each config through ``trial_reports`` in a thread
    that hands over one report at a time and stops training when the generator is closed
    (ASHA, or the search ending). ``clock`` times the trial (wall time by default)."""
    from .trainable import trial_reports

    def trial(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return _reports(lambda report: trial_reports(config, study, data, report,
                                                     data_dir=data_dir, clock=clock))

    return trial


def _reports(body: Callable[[Callable[[dict[str, Any]], bool]], None]
             ) -> Iterator[dict[str, Any]]:
    """Run ``body(report)`` in a thread; yield each report it makes, waiting there until
    the next one is asked for. Closing the generator answers True (stop) to the waiting
    report and to every later one; a body still busy (closed by Ctrl-C mid-epoch) is
    interrupted and waited for, so that no thread outlives the search inside torch."""
    to_driver: queue.Queue = queue.Queue()
    to_body: queue.Queue = queue.Queue()
    stopping = threading.Event()

    def report(result: dict[str, Any]) -> bool:
        if stopping.is_set():
            return True
        to_driver.put(("report", result))
        return bool(to_body.get())

    def run() -> None:
        try:
            body(report)
            to_driver.put(("end", None))
        except BaseException as err:  # noqa: BLE001 - handed to the driver's thread
            to_driver.put(("error", err))

    thread = threading.Thread(target=run, name="nas-trial", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = to_driver.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
            to_body.put(False)
    finally:
        stopping.set()
        to_body.put(True)
        thread.join(timeout=1.0)  # a body waiting at a report ends at once
        if thread.is_alive():  # busy mid-epoch: stop it at its next Python step
            _interrupt(thread)
            thread.join(timeout=60.0)


class TrialInterrupted(BaseException):
    """Raised inside a trial's thread to stop it mid-epoch (the search is ending)."""


def _interrupt(thread: threading.Thread) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(TrialInterrupted))
