"""SoleWriterStorage: the driver's view of its study equals the database's, writes of one
trial are batched until its state changes or the driver flushes, and Optuna's checks
(finished trials, distribution changes) still hold."""

from __future__ import annotations

import math

import optuna
import pytest
from sqlalchemy import event

from nas.run.sole_writer import SoleWriterStorage
from nas.run.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _comparable(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs,
            t.system_attrs, t.intermediate_values)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _drive(study: optuna.Study) -> None:
    """Asks, suggests, attributes, reports, tells of every state, and enqueues."""
    study.enqueue_trial({"x": 0.5, "op": "b"}, user_attrs={"kind": "baseline"})
    for i in range(6):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_categorical("op", ["a", "b", "c"])
        trial.suggest_int("depth", 1, 4)
        trial.set_user_attr("hash", f"h{i}")
        trial.set_user_attr("curve", [0.1 * i, (0.1, "tuple")])
        trial.storage.set_trial_system_attr(trial._trial_id, "sys", {"i": i})
        trial.report(0.5 + i, step=1)
        trial.set_user_attr("hash", f"h{i}-final")  # the last value of a key wins
        state = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                 optuna.trial.TrialState.FAIL][i % 3]
        study.tell(trial, float(i) if state == optuna.trial.TrialState.COMPLETE else None,
                   state=state)
    study.ask().suggest_float("x", 0.0, 1.0)  # left RUNNING


def test_the_driver_sees_what_the_database_holds(url):
    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    _drive(study)
    study._storage.flush()
    mine = study.get_trials(deepcopy=False)
    theirs = optuna.load_study(study_name="s", storage=open_storage(url)).get_trials()
    assert [_comparable(t) for t in mine] == [_comparable(t) for t in theirs]
    assert len(mine) == 7 and mine[0].user_attrs["kind"] == "baseline"
    assert mine[0].params == {"x": 0.5, "op": "b"} | {"depth": mine[0].params["depth"]}
    assert mine[1].user_attrs["curve"] == [0.1, [0.1, "tuple"]]  # as JSON stores it
    assert mine[-1].state == optuna.trial.TrialState.RUNNING


def test_trials_of_each_state_are_the_databases(url):
    """The unfinished states are answered from the storage's own index (study.ask looks
    for WAITING trials at every ask): the same trials as the database's, in order, for
    every set of states, in a running study and in a reopened one."""
    State = optuna.trial.TrialState
    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    _drive(study)
    for _ in range(3):  # waiting, some popped by the next asks, some left waiting
        study.enqueue_trial({"x": 0.25})
    study.ask()
    study._storage.flush()
    reopened = optuna.load_study(study_name="s", storage=SoleWriterStorage(open_storage(url)))
    plain = optuna.load_study(study_name="s", storage=open_storage(url))
    for states in [(State.WAITING,), (State.RUNNING,), (State.WAITING, State.RUNNING),
                   (State.COMPLETE,), (State.RUNNING, State.PRUNED), None]:
        want = [_comparable(t) for t in plain.get_trials(states=states)]
        assert [_comparable(t) for t in study.get_trials(states=states)] == want
        assert [_comparable(t) for t in reopened.get_trials(states=states)] == want
    assert len(plain.get_trials(states=(State.WAITING,))) == 2
    assert len(plain.get_trials(states=(State.RUNNING,))) == 2


def test_all_trials_are_listed_in_number_order_even_when_stored_out_of_it(url):
    """All trials are listed without a sort while the storage added them in number
    order; trials whose numbers the database holds out of id order (written by another
    tool) are still listed in number order."""
    import sqlite3

    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    _drive(study)
    study._storage.flush()
    assert [t.number for t in study.get_trials()] == list(range(7))
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:  # swap the numbers of the trials with ids 2 and 5
        conn.execute("UPDATE trials SET number = -1 WHERE trial_id = 2")
        conn.execute("UPDATE trials SET number = 1 WHERE trial_id = 5")
        conn.execute("UPDATE trials SET number = 4 WHERE trial_id = -1 OR number = -1")
    conn.close()
    again = optuna.load_study(study_name="s", storage=SoleWriterStorage(open_storage(url)))
    plain = optuna.load_study(study_name="s", storage=open_storage(url))
    listed = again.get_trials()
    assert [t.number for t in listed] == list(range(7))
    assert [_comparable(t) for t in listed] == [_comparable(t) for t in plain.get_trials()]


def test_a_reopened_study_reads_everything_back(url):
    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    _drive(study)
    study._storage.flush()
    before = [_comparable(t) for t in study.get_trials()]
    again = optuna.load_study(study_name="s", storage=SoleWriterStorage(open_storage(url)))
    assert [_comparable(t) for t in again.get_trials()] == before


def test_a_trials_writes_reach_the_database_in_one_commit_before_its_state(url):
    storage = open_storage(url)
    commits = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    study = optuna.create_study(storage=SoleWriterStorage(storage), study_name="s")
    study.ask().suggest_float("x", 0.0, 1.0)  # first sight of "x": checked by the database
    reader = optuna.load_study(study_name="s", storage=open_storage(url))

    trial = study.ask()
    commits.clear()
    for name in "abcdefgh":
        trial.suggest_categorical(name, ["p", "q"])  # first sight: one commit each
    trial2 = study.ask()
    commits.clear()
    for name in "abcdefgh":
        trial2.suggest_categorical(name, ["p", "q"])
    for key in range(10):
        trial2.set_user_attr(f"k{key}", key)
    assert commits == []  # buffered
    assert reader.get_trials()[2].params == {}  # not yet in the database
    study._storage.flush()
    assert len(commits) == 1
    assert set(reader.get_trials()[2].params) == set("abcdefgh")
    assert reader.get_trials()[2].user_attrs["k9"] == 9
    trial2.set_user_attr("k9", "again")  # a key already in the database is updated
    study._storage.flush()
    assert reader.get_trials()[2].user_attrs["k9"] == "again"

    trial3 = study.ask()
    trial3.suggest_float("x", 0.0, 1.0)
    trial3.set_user_attr("status", "ok")
    commits.clear()
    study.tell(trial3, 1.0)
    # the buffered writes, the state and values, the read-back of the told trial
    assert len(commits) == 3
    told = reader.get_trials()[3]
    assert told.state == optuna.trial.TrialState.COMPLETE and told.value == 1.0
    assert told.user_attrs["status"] == "ok" and math.isfinite(told.params["x"])


def test_optunas_checks_still_hold(url):
    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_user_attr(trial._trial_id, "late", 1)
    with pytest.raises(KeyError):  # a trial this study never had
        study._storage.set_trial_user_attr(trial._trial_id + 1000, "k", 1)
    with pytest.raises(ValueError, match="[Cc]annot set different distribution"):
        study.ask().suggest_categorical("x", ["a", "b"])  # "x" was a float


def test_discarded_params_leave_nothing_behind_and_the_trial_samples_again(url):
    # The search core re-samples a trial in place of a duplicate. A name seen for the
    # first time goes to the database at once (Optuna's distribution check), the rest is
    # buffered: both must be gone, in the driver's view and in the database, once the
    # trial is sampled again and flushed.
    study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                study_name="s")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)  # known name: buffered
    trial.suggest_categorical("op", ["a", "b"])  # first seen: in the database already
    storage = study._storage
    storage.discard_params(trial._trial_id)
    storage.set_trial_system_attr(trial._trial_id, "fixed_params", {"x": 0.25})
    again = optuna.trial.Trial(study, trial._trial_id)
    assert again.suggest_float("x", 0.0, 1.0) == 0.25
    assert again.params == {"x": 0.25}
    storage.flush()

    reread = optuna.load_study(study_name="s", storage=url).trials[1]
    assert reread.params == {"x": 0.25} and set(reread.distributions) == {"x"}
    assert _comparable(storage.get_trial(trial._trial_id)) == _comparable(reread)
    study.tell(again, 0.5)
    with pytest.raises(RuntimeError):  # a finished trial keeps what it was told
        storage.discard_params(again._trial_id)
