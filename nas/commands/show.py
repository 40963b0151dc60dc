"""``nas show SPEC [SPEC ...] [--json]``: each spec's graph as a per-node table (node,
type, output shape, params, multiply-adds and attention bytes for one image;
``--json``: one JSON list of node objects per line, per spec)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a model spec node by node", description=__doc__)
    p.add_argument("specs", metavar="SPEC", nargs="+", help="a spec YAML path or zoo:NAME")
    p.add_argument("--json", action="store_true", help="print a JSON list of node objects")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search_space import load_spec
    from search_space.summary import node_rows

    for n, name in enumerate(args.specs):
        spec = load_spec(name)
        rows = node_rows(spec)
        if args.json:
            print(json.dumps(rows), flush=True)
            continue
        if n:
            print()
        _print_table(spec, rows)
    return 0


def _print_table(spec, rows: list[dict]) -> None:
    from search_space.summary import width_notes

    header = ("node", "type", "output", "params", "macs", "attn bytes")
    table = [header] + [
        (r["node"], r["type"], "x".join(map(str, r["out_shape"])), f"{r['params']:,}",
         f"{r['macs']:,}", f"{r['attention_bytes']:,}") for r in rows]
    table.append(("total", "", "", f"{sum(r['params'] for r in rows):,}",
                  f"{sum(r['macs'] for r in rows):,}",
                  f"{sum(r['attention_bytes'] for r in rows):,}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"{spec.name}  ({spec.hash()[:16]})")
    for n, r in enumerate(table):
        cells = [c.ljust(w) if i < 3 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells).rstrip())
        if n == 0 or n == len(table) - 2:
            print("  ".join("-" * w for w in widths))
    for note in width_notes(spec):
        print(f"note: {note}")
