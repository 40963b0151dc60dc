"""Training runs of the proxy-fidelity benchmark in worker processes: one run per job (the
code a trial runs), a cache file saved as each run finishes, and an optional deadline
before which only runs predicted to end are started."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any


def train_once(job: dict[str, Any]) -> dict[str, Any]:
    """One training run (in a worker process): history of accuracy per epoch, time."""
    import torch

    from nas.evaluate.data import cached_data
    from nas.evaluate.train import seed_everything, train
    from nas.study import TrainingConfig, load_study
    from search_space import ModelSpec

    torch.set_num_threads(job["threads"])
    study = load_study(job["study"])
    cfg = TrainingConfig(**{**dataclasses.asdict(study.training), **job["training"]})
    data = cached_data(study.data)
    seed_everything(job["seed"])
    model = ModelSpec.from_dict(job["spec"]).build()
    cpu0 = time.process_time()
    try:
        result = train(model, data, cfg, device="cpu", seed=job["seed"])
    except Exception as err:  # noqa: BLE001 - a diverged run is a data point
        return {**_key_of(job), "error": f"{type(err).__name__}: {err}"}
    return {**_key_of(job), "accuracy": [h["accuracy"] for h in result.history],
            "train_s": result.train_s, "cpu_s": time.process_time() - cpu0,
            "epochs": cfg.epochs}


def _key_of(job: dict[str, Any]) -> dict[str, Any]:
    return {"hash": job["hash"], "training": job["training"], "seed": job["seed"]}


def cache_key(h: str, training: dict[str, Any], seed: int) -> str:
    text = json.dumps({"hash": h, "training": training, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_jobs(jobs: list[dict[str, Any]], workers: int, cache: dict[str, Any] | None,
             cache_path: Path | None, deadline: float | None = None
             ) -> list[dict[str, Any]] | None:
    """Results of ``jobs`` in order; cached ones are not rerun, new ones are cached as each
    finishes. With ``deadline`` (a ``time.monotonic()`` value) a run starts only if its
    predicted time fits before it; None when runs are left (the cache keeps what finished)."""
    # The cheap proxies first, then each architecture's reference runs together: a run
    # stopped part-way (the cache resumes it) has complete data points for the
    # architectures it reached, not the reference of every architecture and no proxy.
    todo = sorted((j for j in jobs if cache is None or j["key"] not in cache),
                  key=lambda j: (j["label"].startswith("reference/"), j["arch"]))
    done: dict[str, Any] = {} if cache is None else cache
    if todo:
        print(f"training {len(todo)} run(s) on {workers} worker(s)...", flush=True)
        _run_until(todo, workers, done, cache, cache_path, deadline)
    missing = [j for j in jobs if j["key"] not in done]
    if missing:
        print(f"stopped at the time limit: {len(missing)} run(s) left, kept "
              f"{len(jobs) - len(missing)} in {cache_path}; the same command resumes",
              flush=True)
        return None
    return [done[j["key"]] for j in jobs]


def _run_until(todo: list[dict[str, Any]], workers: int, done: dict[str, Any],
               cache: dict[str, Any] | None, cache_path: Path | None,
               deadline: float | None) -> None:
    """Train ``todo`` on ``workers`` processes, the next run that fits starting as one
    ends; each result is saved as soon as it is in, so a kill loses only the runs then
    training, never finished ones waiting behind a longer run. Interrupted (Ctrl-C, or
    SIGTERM, which the script turns into it), the workers are ended with it: a training
    left running would hold a core for nothing, its result having nowhere to go."""
    import concurrent.futures as cf
    import multiprocessing as mp

    waiting = list(todo)
    # how much slower than predicted the runs of this sitting went (a busy machine):
    # the deadline's predictions are stretched by it
    slowdowns: list[float] = []
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                  initializer=_die_with_parent)
    try:
        running: dict[cf.Future, dict[str, Any]] = {}
        while waiting or running:
            while waiting and len(running) < workers:
                stretch = max(1.0, statistics.median(slowdowns)) if slowdowns else 1.0
                job, deferred = _next_that_fits(waiting, done, deadline, stretch)
                if job is None:
                    if not (deferred and running):
                        waiting = []  # nothing left fits before the deadline
                    break
                waiting.remove(job)
                running[pool.submit(train_once, job)] = job
            if not running:
                break
            ended, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in ended:
                job = running.pop(fut)
                res = done[job["key"]] = fut.result()
                _save_cache(cache, cache_path)  # first: a run said done is a run kept
                _progress(job, res)
                predicted = predicted_s(job, done)
                if predicted and res.get("train_s"):
                    slowdowns.append(res["train_s"] / predicted)
    except BaseException:
        _end_workers(pool)
        raise
    pool.shutdown()


def _end_workers(pool: Any) -> None:
    """Stop ``pool`` now, its running trainings included (``shutdown`` would wait for
    them; ``terminate_workers`` is Python 3.14's, the process table before it)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _die_with_parent() -> None:
    """In a worker: end when the parent does, even by SIGKILL (Linux; elsewhere a no-op)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def predicted_s(job: dict[str, Any], done: dict[str, Any]) -> float | None:
    """Seconds ``job`` should take: its ``predict_from`` run's (the architecture's first
    proxy) scaled by epochs; 0 for a run with no prediction (a proxy itself, or one whose
    proxy failed); None while that proxy is still to finish."""
    source = job.get("predict_from")
    if source in (None, job["key"]):
        return 0.0
    if source not in done:
        return None
    base = done[source]
    return (base["train_s"] * job["training_epochs"] / base["epochs"]
            if base.get("epochs") and base.get("train_s") else 0.0)


def _next_that_fits(waiting: list[dict[str, Any]], done: dict[str, Any],
                    deadline: float | None, stretch: float = 1.0
                    ) -> tuple[dict[str, Any] | None, bool]:
    """(The first waiting run predicted to end before ``deadline``, whether some run waits
    for its prediction): a run whose proxy is still to finish waits for it; the others
    start if ``stretch`` x their predicted time fits (no prediction: if the deadline has
    not passed)."""
    if deadline is None:
        return waiting[0], False
    left = deadline - time.monotonic()
    deferred = False
    for job in waiting:
        need = predicted_s(job, done)
        if need is None:
            deferred = True
            continue
        if left > need * stretch:
            return job, deferred
    return None, deferred


def _progress(job: dict[str, Any], res: dict[str, Any]) -> None:
    acc = res.get("accuracy")
    text = f"{acc[-1]:.4f}" if acc else res.get("error")
    print(f"  {job['name']:28s} {job['label']:10s} acc {text}  "
          f"{res.get('train_s', 0):6.1f} s", flush=True)


def _save_cache(cache: dict[str, Any] | None, path: Path | None) -> None:
    if cache is None or path is None:
        return
    from nas.run.outputs import write_output

    write_output(path, json.dumps(cache), option="--cache")  # atomic: a kill keeps the old
