"""Writing what the user asked for (``-o FILE``, ``--plot FILE``) and what the results
verbs keep beside a run (plots, export copies), the same safe way everywhere.

- ``write_output``: the file the user named (``ensure_writable`` checks it before a long
  computation). A directory, or a place that cannot be
  written (read-only file system, no permission, full disk), is one UserError naming
  the option and the path. The text goes to a temporary file next to it first and
  replaces the target only once complete, so a failed write never truncates a file
  that was there (nothing saved is lost).
- ``write_side`` / ``append_side``: copies kept inside the run directory for
  convenience. A run directory may be read-only (archived, shared): then they are
  skipped with a logged warning, and the verb still does what was asked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)


def write_output(path: str | os.PathLike, data: str | bytes, *, option: str = "-o") -> Path:
    """Write ``data`` to ``path`` atomically; UserError if it cannot be."""
    out = _file_target(path, option)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as err:
        if _exists(tmp):
            tmp.unlink(missing_ok=True)
        raise _cannot_write(option, out, err) from None
    return out


def ensure_writable(path: str | os.PathLike, *, option: str = "-o") -> Path:
    """Before a long computation whose result goes to ``path``: UserError now, not after
    it, unless a file can be written there (its folder is created)."""
    out = _file_target(path, option)
    probe = out.with_name(f".{out.name}.probe{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _cannot_write(option, out, err) from None
    return out


def _file_target(path: str | os.PathLike, option: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{option} {out}: is a directory; give a file name")
    return out


def _cannot_write(option: str, out: Path, err: OSError) -> UserError:
    return UserError(f"{option} {out}: cannot write it: {err.strerror or err}")


def write_side(path: str | os.PathLike, data: str | bytes) -> bool:
    """Keep a copy inside the run directory if it can be written; False if skipped."""
    try:
        write_output(path, data)
        return True
    except UserError:
        log.warning("%s not kept: cannot write in the run directory", path)
        return False


def append_side(path: str | os.PathLike, line: str) -> bool:
    """Append one line to a log inside the run directory if it can be written."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line if line.endswith("\n") else line + "\n")
        return True
    except OSError as err:
        log.warning("%s not updated: %s", path, err.strerror)
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False
