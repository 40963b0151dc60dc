"""``nas zoo [NAME ...] [--json]``: the hand-designed baselines, each with its built
parameter count beside the reference count it is checked against.

Any listed name works wherever a spec path does, as ``zoo:NAME``.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the baseline models (use them as zoo:NAME)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="only these entries")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.set_defaults(func=run)


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def run(args: argparse.Namespace) -> int:
    from search_space.zoo import list_zoo, zoo_entry, zoo_text

    names = args.names or list_zoo()
    for name in names:  # unknown names fail before any model is built
        zoo_text(name)
    entries = [zoo_entry(name) for name in names]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    header = ("name", "params", "reference", "diff", "tol", "input", "classes", "source")
    rows = [header]
    for e in entries:
        diff = f"{100 * e.relative_error:+.2f}%" + ("" if e.within_tolerance else " !")
        rows.append((e.name, _millions(e.params), _millions(e.reference_params), diff,
                     f"{100 * e.tolerance:.0f}%", "x".join(map(str, e.input)), str(e.classes),
                     e.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:  # the last column (source) is left unpadded
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    if any(e.unmodelled_params for e in entries):
        print("diff is against the reference minus its unmodelled parts (see --json, "
              "meta.unmodelled in the spec)")
    return 0
