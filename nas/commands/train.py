"""``nas train SPEC --study STUDY [--epochs N] [-o DIR] [--data-dir D]``: train one
architecture (a zoo name or an exported spec file; its input and classes adapted to the
study's data) on the study's data with a full-length schedule. Checkpoints after every
epoch; run the same command again after a kill and it resumes from DIR/checkpoint.pt.
Prints the final metrics as JSON (also in DIR/metrics.json)."""

from __future__ import annotations

import argparse
import json

from . import options

#: a progress line every this many steps within an epoch (timm's --log-interval default):
#: an epoch of a large network on a CPU takes minutes, and silence looks like a hang.
LOG_INTERVAL = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one spec fully, with resumable checkpoints",
                       description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="a spec YAML path or zoo:NAME")
    p.add_argument("--study", required=True, metavar="STUDY",
                   help="a study YAML file, a packaged study name, or a run directory "
                        "(its saved study)")
    p.add_argument("--epochs", type=options.positive_int, metavar="N",
                   help="epochs (default: the study's training.epochs)")
    options.add_output(p, metavar="DIR", old_alias=True, help="where checkpoints, weights "
                       "and metrics go (default: train-<spec name>)")
    p.add_argument("--data-dir", metavar="D", help="where cifar*/imagefolder data are")
    p.add_argument("--log-interval", type=options.non_negative_int, default=LOG_INTERVAL,
                   metavar="N", help=f"a progress line every N steps within an epoch "
                                     f"(default {LOG_INTERVAL}; 0: after each epoch only)")
    p.add_argument("--seed", type=options.seed, default=0,
                   help="initialisation and data-order seed, 0..2**32-1")
    options.add_device(p, "network trains")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluate.train import resolve_device
    from ..results.fulltrain import full_train

    resolve_device(args.device)  # a device this machine lacks: refused before DIR is made

    out = args.output or f"train-{Path(args.spec.removeprefix('zoo:')).stem}"
    metrics = full_train(args.spec, args.study, out_dir=out, epochs=args.epochs,
                         data_dir=args.data_dir, device=args.device, seed=args.seed,
                         log_interval=args.log_interval)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0
