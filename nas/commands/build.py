"""``nas build SPEC [SPEC ...] [--json] [--batch N]``: validate model specs (paths
or zoo:NAME), and print each one's parameters, multiply-adds, output shape,
canonical hash and blocks by type (``--json``: one JSON object per line, per spec).
Stops at the first spec that does not build."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="validate a model spec and print its size and hash",
                       description=__doc__)
    p.add_argument("specs", metavar="SPEC", nargs="+", help="a spec YAML path or zoo:NAME")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch", type=int, default=1,
                   help="batch size for multiply-adds and memory (default 1)")
    p.set_defaults(func=run)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def run(args: argparse.Namespace) -> int:
    from nas.errors import UserError
    from search_space import load_spec
    from search_space.summary import summarize

    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: a positive int is required")
    for n, name in enumerate(args.specs):
        info = summarize(load_spec(name), batch=args.batch)
        if args.json:
            print(json.dumps(info, sort_keys=True), flush=True)
            continue
        if n:
            print()
        _print_table(info)
    return 0


def _print_table(info: dict) -> None:
    shape = lambda s: "x".join(map(str, s))  # noqa: E731
    lines = [
        ("name", info["name"]),
        ("hash", info["hash"]),
        ("input", shape(info["input_shape"])),
        ("features", shape(info["feature_shape"])),
        ("output shape", shape(info["output_shape"])),
        ("params", f"{info['params']:,}"),
        ("macs", f"{info['macs']:,} (batch {info['batch']})"),
        ("attention", f"{_bytes(info['attention_bytes'])} of attention tensors"),
    ]
    cost = info.get("cost")
    if cost and "train_memory_bytes" in cost:
        lines.append(("train memory", f"{_bytes(cost['train_memory_bytes'])} estimated "
                                      f"(batch {info['batch']}, {cost.get('optimizer', '?')})"))
    lines.append(("blocks", ", ".join(f"{t} x{n}" for t, n in info["blocks_by_type"].items())))
    lines += [("note", note) for note in info.get("notes", [])]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}", flush=True)
