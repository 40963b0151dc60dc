"""``nas``: the command-line entry point. Parses, dispatches to one verb module,
and turns user mistakes into one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands import VERBS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Search hybrid convolution + self-attention classifiers.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"nas.commands.{verb}").register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    import yaml

    from convattn.errors import ConfigError

    from .errors import UserError

    errors: list[type[BaseException]] = [UserError, ConfigError, yaml.YAMLError, FileNotFoundError]
    try:
        from search_space.errors import SpecError
        errors.append(SpecError)
    except ImportError:  # search_space not built yet
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"nas {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
