"""``nas export RUN_DIR --pick best:OBJECTIVE | knee | trial:N [--max-latency-ms X
--max-memory-mb Y --max-params Z --max-macs W] -o arch.yaml``: write the chosen
architecture as a model spec (the zoo's format) with its provenance under ``meta``
(study, trial, measured metrics, device, precision, batch size, torch version).
``knee`` = the front point farthest from the line (plane) through the front's extremes
in normalised objective space. A copy goes to RUN_DIR/exports/."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a found architecture as a spec with provenance",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("--pick", required=True, metavar="PICK",
                   help="best:OBJECTIVE (e.g. best:accuracy), knee, or trial:N")
    p.add_argument("--max-latency-ms", type=float, metavar="X",
                   help="only trials with latency_ms <= X")
    p.add_argument("--max-memory-mb", type=float, metavar="Y",
                   help="only trials with memory_mb <= Y")
    p.add_argument("--max-params", type=float, metavar="Z", help="only trials with params <= Z")
    p.add_argument("--max-macs", type=float, metavar="W", help="only trials with macs <= W")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the spec YAML to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..results.export import export
    from ..results.records import open_run

    results = open_run(args.run_dir)
    limits = {"latency_ms": args.max_latency_ms, "memory_mb": args.max_memory_mb,
              "params": args.max_params, "macs": args.max_macs}
    rec = export(results, args.pick, args.output, limits)
    values = ", ".join(f"{k} {v:.4g}" for k, v in rec["values"].items() if v is not None)
    print(f"exported trial {rec['trial']} ({rec['why']}; {values}) as {rec['name']} "
          f"to {rec['path']}")
    print(f"hash {rec['hash']}; " + (f"copy in {rec['copy']}" if rec["copy"] else
                                     "no copy kept: the run directory is read-only"))
    return 0
