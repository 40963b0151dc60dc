"""``nas``: the command-line entry point. Parses, dispatches to one verb module,
and turns user mistakes into one clear line and a non-zero exit.

Exit codes: 0 done; 2 a mistake in what was asked (one line on stderr, nothing saved is
touched); 130 interrupted (Ctrl-C); 141 the reader of our output went away (``nas ...
| head``: quiet, as standard Unix tools killed by SIGPIPE)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import signal
import sys

from .commands import VERBS

#: file-system failures that are the user's to fix (a path, permissions, a full disk).
_FS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
              errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOENT,
              errno.ELOOP}
#: options whose value may start with '-' (``--budget -5gpuh``): argparse would take
#: it for an option and answer "expected one argument"; the value's own check says
#: what is wrong with it instead.
_DASH_VALUES = ("--budget", "--seed")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("convattn-nas")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _verbosity(p: argparse.ArgumentParser, default: object = 0) -> None:
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="more log output (-vv: debug)")
    p.add_argument("-q", "--quiet", action="count", default=default,
                   help="less output: warnings off, no live progress line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Search hybrid convolution + self-attention classifiers.")
    parser.add_argument("--version", action="version", version=f"nas {_version()}")
    _verbosity(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        importlib.import_module(f"nas.commands.{verb}").register(sub)
    for p in sub.choices.values():  # -q/-v after the verb too (nas search -q ...)
        _verbosity(p, default=argparse.SUPPRESS)
    for p in [parser, *sub.choices.values()]:
        _plain_help(p)
    for action in sub._choices_actions:
        action.help = _plain(action.help)
    return parser


def _verb_parser(parser: argparse.ArgumentParser, verb: str | None) -> argparse.ArgumentParser:
    """The sub-parser of ``verb`` (``parser`` itself when there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and verb in action.choices:
            return action.choices[verb]
    return parser


def _plain(text: str | None) -> str | None:
    """Help text without the reStructuredText markup of the docstrings it comes from."""
    return text.replace("``", "") if text else text


def _plain_help(p: argparse.ArgumentParser) -> None:
    p.description = _plain(p.description)
    p.epilog = _plain(p.epilog)
    for action in p._actions:
        action.help = _plain(action.help)


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--budget -5gpuh`` -> ``--budget=-5gpuh`` (see ``_DASH_VALUES``)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if (a in _DASH_VALUES and i + 1 < len(argv) and argv[i + 1][:1] == "-"
                and argv[i + 1][1:2].isdigit()):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING + 10 * (getattr(args, "quiet", 0) - getattr(args, "verbose", 0))
    level = max(logging.DEBUG, min(logging.CRITICAL, level))
    logging.basicConfig(level=level, format="nas: %(levelname)s: %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if level > logging.WARNING:  # -q: Python warnings off too
        import warnings

        warnings.simplefilter("ignore")


def _user_errors() -> tuple[type[BaseException], ...]:
    import yaml

    from convattn.errors import ConfigError
    from search_space.errors import SpecError

    from .errors import UserError

    return (UserError, ConfigError, SpecError, yaml.YAMLError)


def _fs_error(err: OSError) -> str:
    """``PATH: Permission denied`` (what ``cp``/``tee`` say), plus a hint for a directory."""
    what = err.strerror or str(err)
    if err.filename is None:
        return what
    hint = "; give a file name, not a directory" if err.errno == errno.EISDIR else ""
    return f"{err.filename}: {what}{hint}"


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away: stop writing, no traceback (also not at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_dash_values(list(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the verb's parser: its usage, "nas VERB: error: ..."
        _verb_parser(parser, args.verb).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verb is None:  # bare `nas`: the help, as git and docker do
        parser.print_help()
        return 0
    _setup_logging(args)
    # Ctrl-C (SIGINT) is how every verb is stopped cleanly: a process started in the
    # background of a script inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so a `kill -INT` would be lost; the verbs take it as Ctrl-C.
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except _user_errors() as err:
        print(f"nas {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OSError as err:
        if err.errno not in _FS_ERRNOS:
            raise
        print(f"nas {args.verb}: error: {_fs_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
