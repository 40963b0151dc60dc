"""What one ask of the study's TPE costs on a long search, against Optuna's TPESampler.

Takes the Optuna study a ``driver_scale.py --storage URL`` run left (e.g. 10,000 surrogate
trials of the digits space, most of them duplicates the search core told), copies it into
memory, and times ``ask`` + ``space.sample`` (what the driver's propose pays per sampler
call) for three samplers, interleaved ask by ask so that load affects them alike:

- ``optuna_all``: Optuna's ``TPESampler`` on every trial, duplicates included (what a
  plain Optuna loop over this study would run);
- ``optuna_distinct``: Optuna's ``TPESampler`` on the study without the duplicates;
- ``study_tpe``: the study's sampler (``nas.search.snapshot_tpe.SnapshotTPE``) on every
  trial; it ignores the duplicates, so it must propose exactly what ``optuna_distinct``
  proposes (``same_proposals``), only faster.

Each ask's trial is told FAIL afterwards (no observation), so every ask sees the same
history. Writes benchmarks/results/tpe_ask[_<tag>].json.

    python benchmarks/driver_scale.py --workers 64 --trials 10000 --trial-seconds 60 \\
        --storage sqlite:////tmp/ds10k.db
    python benchmarks/tpe_ask.py --storage sqlite:////tmp/ds10k.db --asks 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True, help="SQLAlchemy URL of a driver_scale run")
    ap.add_argument("--study", default="digits", help="the nas study the run searched")
    ap.add_argument("--asks", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag")
    args = ap.parse_args(argv)

    import optuna

    from nas.search.propose import make_sampler
    from nas.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(args.study)
    names = optuna.get_all_study_names(args.storage)
    source = optuna.load_study(study_name=names[-1], storage=args.storage)
    trials = [t for t in source.get_trials(deepcopy=False) if t.state.is_finished()]
    distinct = [t for t in trials if "duplicate_of" not in t.user_attrs]

    def fresh(sampler, history):
        s = optuna.create_study(directions=source.directions, sampler=sampler)
        s.add_trials(history)
        return s

    runs = {"optuna_all": fresh(optuna.samplers.TPESampler(seed=args.seed), trials),
            "optuna_distinct": fresh(optuna.samplers.TPESampler(seed=args.seed), distinct),
            "study_tpe": fresh(make_sampler("tpe", args.seed), trials)}
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    proposals: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(args.asks):
        for name, ostudy in runs.items():
            t0 = time.perf_counter()
            trial = ostudy.ask()
            study.space.sample(trial)
            seconds[name].append(time.perf_counter() - t0)
            proposals[name].append(trial.params)
            ostudy.tell(trial, state=optuna.trial.TrialState.FAIL)
    out = {"storage": args.storage.split("://")[0], "study": args.study,
           "trials": len(trials), "distinct": len(distinct), "asks": args.asks,
           "ask_s_median": {k: statistics.median(v) for k, v in seconds.items()},
           "ask_s": seconds,
           "same_proposals": proposals["study_tpe"] == proposals["optuna_distinct"],
           "environment": {"python": platform.python_version(), "optuna": optuna.__version__,
                           "load_avg": list(os.getloadavg())}}
    path = RESULTS / ("tpe_ask" + (f"_{args.tag}" if args.tag else "") + ".json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("trials", "distinct", "ask_s_median",
                                          "same_proposals")}))


if __name__ == "__main__":
    main()
