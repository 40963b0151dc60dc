"""Summarise gpu_check.sh's real search from its run directory: how many trials ran at
once on the GPU (from the budget ledger's wall-time spans), the GPU fraction that
``gpus_per_trial: auto`` chose, every trial's status, and what became of the giant
baseline (it must be infeasible on memory, with the search going on after it).

    python benchmarks/_gpu_search_summary.py RUN_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def summarise(run_dir: Path) -> dict:
    import optuna

    from nas.run.ledger import Ledger

    meta = json.loads((run_dir / "run.json").read_text())
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    trials = optuna.load_study(study_name=meta["optuna_study"], storage=storage).trials
    entries = Ledger(run_dir / "ledger.jsonl").entries
    spans = [(e.time - e.wall_s, e.time) for e in entries if e.wall_s > 0]
    at_once = max((sum(1 for a, b in spans if a <= t < b) for t, _ in spans), default=0)
    rows = [{"number": t.number, "state": t.state.name, "status": t.user_attrs.get("status"),
             "kind": t.user_attrs.get("kind", "search"),
             "violations": t.user_attrs.get("violations"),
             "message": (t.user_attrs.get("message") or "")[:200],
             "values": t.values} for t in trials]
    giant = [r for r in rows if r["kind"] == "baseline"]
    after_giant = [r for r in rows if giant and r["number"] > giant[0]["number"]
                   and r["status"] in ("ok", "stopped")]
    return {"resources": meta.get("resources"), "trials": len(rows),
            "statuses": dict(Counter(str(r["status"]) for r in rows)),
            "max_trials_at_once": at_once, "giant_baseline": giant,
            "trained_after_the_giant": len(after_giant), "rows": rows}


if __name__ == "__main__":
    out = summarise(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, default=str))
