"""The run's Optuna storage as its driver holds it: the driver is the study's only writer.

Optuna wraps an ``RDBStorage`` in ``_CachedStorage``, which keeps finished trials in
memory but, because another process may be writing them, re-reads EVERY unfinished trial
from the database whenever the trials are read: with 64 workers that is 64+ RUNNING
trials (params, attributes, values: ~10 queries each) re-read at each ask, half of the
driver's time in ``benchmarks/driver_scale.py``. And every ``suggest_*`` and
``set_user_attr`` is its own transaction: ~40 commits per candidate.

In this project nothing else writes a run's study: workers never touch the storage and
one driver holds a run at a time (the run directory's lock; see :mod:`nas.run.storage`).
So :class:`SoleWriterStorage`:

- reads the study from the database once, then keeps every trial, unfinished ones
  included, in memory, applying its own writes to that copy;
- buffers the attribute writes of an unfinished trial (params, user and system attrs,
  intermediate values) and writes them in ONE transaction before the trial's state
  changes, or when the driver calls :meth:`flush` (before a worker runs the trial, so a
  driver that dies can re-run it). This is the persistence contract Optuna documents for
  its own cached storage: writes of a trial's attributes reach the database before the
  write of its state succeeds; the state writes themselves are immediate;
- after a state write, re-reads that one trial from the database, so what it keeps of a
  finished trial is exactly what readers (``nas status``, optuna-dashboard) see;
- keeps the numbers of its unfinished trials, so that the trials of an unfinished state
  are found without a pass over them all: ``study.ask()`` looks for WAITING trials at
  every ask, which Optuna's cached storage answers by filtering every trial (linear in
  the trials: 2.3 ms per ask on average over 4,000 under cProfile); and, while its
  trials were created in number order (always, with one driver), lists them all without
  the sort by number Optuna's cached storage does at every ask (3.8 ms per ask at 4,000
  trials under cProfile; TPE reads all trials once per ask).

Readers open the database with their own plain storage; they see a running trial's
params and attributes once the driver flushed them, which it does before the trial starts.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Container, Sequence
from importlib import import_module
from typing import Any

from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from .storage import open_storage


class SoleWriterStorage(_CachedStorage):
    """An Optuna storage for a study only this process writes (see the module)."""

    def __init__(self, backend: RDBStorage):
        super().__init__(backend)
        self._loaded: set[int] = set()  # studies read from the database once
        self._pending: dict[int, dict[tuple[str, Any], Any]] = {}  # trial id -> writes
        self._unfinished: dict[int, set[int]] = {}  # study id -> waiting/running numbers
        self._out_of_order: set[int] = set()  # studies whose cache is not in number order

    # ------------------------------------------------------------------ reading
    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        if study_id not in self._loaded:
            super()._read_trials_from_remote_storage(study_id)
            self._loaded.add(study_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if states is None:
            self._read_trials_from_remote_storage(study_id)
            with self._lock:  # cached in number order: listed without a sort
                if study_id not in self._out_of_order:
                    found = list(self._studies[study_id].trials.values())
                    return copy.deepcopy(found) if deepcopy else found
        if states is None or any(s.is_finished() and s in states for s in TrialState):
            return super().get_all_trials(study_id, deepcopy, states)
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            trials = self._studies[study_id].trials
            found = [trials[n] for n in sorted(self._unfinished.get(study_id, ()))
                     if trials[n].state in states]
        return copy.deepcopy(found) if deepcopy else found

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        # A dict keeps first-insertion order: the cache is in number order while no new
        # number is below the last one added (one driver creates trials 0, 1, 2, ...).
        cached = self._studies[study_id].trials
        last = next(reversed(cached), -1)
        for t in trials:
            if t.number not in cached:
                if t.number < last:
                    self._out_of_order.add(study_id)
                last = max(last, t.number)
        super()._add_trials_to_cache(study_id, trials)
        unfinished = self._unfinished.setdefault(study_id, set())
        for t in trials:  # every state change of a cached trial comes through here
            if t.state.is_finished():
                unfinished.discard(t.number)
            else:
                unfinished.add(t.number)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            trial = self._cached(trial_id)
        return trial if trial is not None else self._backend.get_trial(trial_id)

    # ------------------------------------------------------------------ writing
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        # read the study first: a later first read would replace this trial's cached copy
        # (and its buffered writes) with the database's
        self._read_trials_from_remote_storage(study_id)
        return super().create_new_trial(study_id, template_trial)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: distributions.BaseDistribution) -> None:
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            known = self._studies[study_id].param_distribution.get(param_name)
        if known is None:  # the first time this name is seen: the database checks it
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
            self._patch(trial_id, "param", param_name, (param_value_internal, distribution))
            return
        distributions.check_distribution_compatibility(known, distribution)
        self._buffer(trial_id, "param", param_name, (param_value_internal, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._buffer(trial_id, "user", key, json.loads(json.dumps(value)))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._buffer(trial_id, "system", key, json.loads(json.dumps(value)))

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._buffer(trial_id, "step", step, float(intermediate_value))

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        self._flush(trial_id)
        changed = self._backend.set_trial_state_values(trial_id, state=state, values=values)
        fresh = self._backend.get_trial(trial_id)
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            self._add_trials_to_cache(study_id, [fresh])
        return changed

    def flush(self) -> None:
        """Write every buffered attribute of every trial (one transaction)."""
        self._flush(*list(self._pending))

    def discard_params(self, trial_id: int) -> None:
        """Forget every param of an unfinished trial, so that the same trial can be
        sampled again: the search core re-proposes in place when the sampler's choice is
        an architecture already evaluated, rather than tell a duplicate trial and ask a
        new one (three storage round trips). Buffered params just go; the few the
        database already holds (a parameter name seen for the first time is written at
        once, see set_trial_param) are deleted in one transaction."""
        with self._lock:
            trial = self._cached(trial_id)
        if trial is None:
            raise KeyError(f"no trial with id {trial_id}")
        self.check_trial_is_updatable(trial_id, trial.state)
        pending = self._pending.get(trial_id, {})
        buffered = {key for kind, key in pending if kind == "param"}
        for key in buffered:
            del pending[("param", key)]
        written = sorted(set(trial.params) - buffered)
        if written:
            with _create_scoped_session(self._backend.scoped_session) as session:
                session.query(models.TrialParamModel).filter(
                    models.TrialParamModel.trial_id == trial_id,
                    models.TrialParamModel.param_name.in_(written),
                ).delete(synchronize_session=False)
        with self._lock:
            study_id, number = self._trial_id_to_study_id_and_number[trial_id]
            fresh = copy.copy(self._studies[study_id].trials[number])
            fresh.params, fresh.distributions = {}, {}
            self._studies[study_id].trials[number] = fresh

    # ------------------------------------------------------------------ internals
    def _cached(self, trial_id: int) -> FrozenTrial | None:
        where = self._trial_id_to_study_id_and_number.get(trial_id)
        return None if where is None else self._studies[where[0]].trials.get(where[1])

    def _buffer(self, trial_id: int, kind: str, key: Any, value: Any) -> None:
        with self._lock:
            trial = self._cached(trial_id)
        if trial is None:  # as Optuna's storages say of an unknown trial
            raise KeyError(f"no trial with id {trial_id}")
        self.check_trial_is_updatable(trial_id, trial.state)
        self._pending.setdefault(trial_id, {})[(kind, key)] = value
        self._patch(trial_id, kind, key, value)

    def _patch(self, trial_id: int, kind: str, key: Any, value: Any) -> None:
        """Apply one write to the cached trial (a new object: readers holding the old one
        keep what they read, as with Optuna's in-memory storage)."""
        with self._lock:
            study_id, number = self._trial_id_to_study_id_and_number[trial_id]
            trial = copy.copy(self._studies[study_id].trials[number])
            if kind == "param":
                internal, dist = value
                trial.params = {**trial.params, key: dist.to_external_repr(internal)}
                trial.distributions = {**trial.distributions, key: dist}
            elif kind == "user":
                trial.user_attrs = {**trial.user_attrs, key: value}
            elif kind == "system":
                trial.system_attrs = {**trial.system_attrs, key: value}
            else:
                trial.intermediate_values = {**trial.intermediate_values, key: value}
            self._studies[study_id].trials[number] = trial

    def _flush(self, *trial_ids: int) -> None:
        writes = {tid: self._pending.pop(tid) for tid in trial_ids if tid in self._pending}
        if writes:
            self._write(writes)

    def _write(self, writes: dict[int, dict[tuple[str, Any], Any]]) -> None:
        """One transaction: per trial, one updatable check, its params inserted, its
        attributes upserted in one statement per table (Optuna's own steps query the
        trial again for every write: 2-3 ms each, ~40 per candidate)."""
        backend = self._backend
        with _create_scoped_session(backend.scoped_session) as session:
            for trial_id, pending in writes.items():
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, trial.state)
                rows: dict[Any, list[dict[str, Any]]] = {
                    models.TrialUserAttributeModel: [], models.TrialSystemAttributeModel: []}
                for (kind, key), value in pending.items():
                    if kind == "param":
                        internal, dist = value
                        session.add(models.TrialParamModel(
                            trial_id=trial_id, param_name=key, param_value=internal,
                            distribution_json=distributions.distribution_to_json(dist)))
                    elif kind == "step":
                        backend._set_trial_intermediate_value_without_commit(
                            session, trial_id, key, value)
                    else:
                        model = (models.TrialUserAttributeModel if kind == "user"
                                 else models.TrialSystemAttributeModel)
                        rows[model].append({"trial_id": trial_id, "key": key,
                                            "value_json": json.dumps(value)})
                for model, values in rows.items():
                    if values:
                        self._upsert(session, model, values)

    def _upsert(self, session: Any, model: Any, values: list[dict[str, Any]]) -> None:
        """Insert or update (trial, key) rows: one statement where the database has an
        upsert (SQLite >= 3.24, PostgreSQL), else Optuna's one-by-one step."""
        engine = self._backend.engine.name
        if engine == "postgresql" or (engine == "sqlite"
                                      and sqlite3.sqlite_version_info >= (3, 24, 0)):
            dialect = import_module(f"sqlalchemy.dialects.{engine}")
            insert = dialect.insert(model).values(values)
            session.execute(insert.on_conflict_do_update(
                index_elements=[model.trial_id, model.key],
                set_={"value_json": insert.excluded.value_json}))
            return
        for row in values:
            self._backend._set_trial_attr_without_commit(
                session, model, row["trial_id"], row["key"], json.loads(row["value_json"]))


def driver_storage(url: str) -> SoleWriterStorage:
    """The storage a search driver writes a run's Optuna study through (``url``: the
    run's SQLAlchemy URL)."""
    return SoleWriterStorage(open_storage(url))
