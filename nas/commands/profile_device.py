"""``nas profile-device [--out FILE] [--device cpu|cuda|auto] [--batch N] [--quick]``:
measure what a training step costs on THIS machine's device (per block type, map size
and channels; fixed per-step overhead; memory rule) and write it as a YAML device
profile. ``nas search STUDY --dry-run --device-profile FILE`` (or ``resources:
{device_profile: FILE}`` in the study) then prices trials for that device from any
machine, a laptop included. The profile is saved after every curve (``complete:
false`` until the end): run again with the same ``--out``, a stopped measurement continues.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile-device", help="measure this device's profile for planning "
                       "searches elsewhere (YAML)", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE", help="where to write the profile (default: "
                   "device-profile-<device>.yaml in the working directory)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: "
                   "the first GPU when there is one)")
    p.add_argument("--batch", type=int, metavar="N", help="images per timed step (default: "
                   "32 on a GPU, 4 on a CPU)")
    p.add_argument("--threads", type=int, default=1, metavar="T",
                   help="torch threads on a CPU (a CPU trial uses cpus_per_trial; default 1)")
    p.add_argument("--quick", action="store_true", help="a 3-point grid and one memory "
                   "model: seconds, for checking the tool, not for planning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..evaluate.device_profile import describe, profile_yaml, read_partial
    from ..evaluate.profile_measure import measure_profile
    from ..evaluate.train import resolve_device
    from ..run.outputs import ensure_writable, write_output

    try:
        dev = resolve_device(args.device)
    except RuntimeError as err:
        raise UserError(f"--device: {err}") from None
    if dev.type == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    elif dev.type != "cpu":
        raise UserError(f"--device {args.device}: allowed cpu, cuda, cuda:N or auto")
    if args.batch is not None and args.batch < 1:
        raise UserError(f"--batch: {args.batch} is not a positive number of images")
    out = ensure_writable(args.out or f"device-profile-{dev.type}.yaml", option="--out")
    kept = {"curves": 0}

    def save_partial(partial: dict) -> None:  # each curve, so a kill loses one at most
        write_output(out, profile_yaml(partial), option="--out")
        kept["curves"] = sum(1 for c in partial["curves"] if c in partial["blocks"])

    try:
        profile = measure_profile(
            str(dev), batch=args.batch, threads=args.threads, quick=args.quick,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            resume_from=read_partial(out), on_curve=save_partial)
    except KeyboardInterrupt:
        print(f"nas profile-device: interrupted; {kept['curves']} curves kept in {out}: the "
              "same command continues from them", file=sys.stderr)
        return 130
    path = write_output(out, profile_yaml(profile), option="--out")
    print(f"profile of {describe(profile)}: {len(profile['blocks'])} block curves -> {path}")
    return 0
