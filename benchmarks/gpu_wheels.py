"""Prepare, on a machine with package registries, the wheels a bare GPU machine needs to
run ``benchmarks/gpu_check.sh``; that machine reaches no registry and has its own Python
(3.12) with torch, torchvision, timm, numpy, scipy, matplotlib, scikit-learn, pyyaml and
networkx, but not Optuna, Ray or their dependencies.

    python benchmarks/gpu_wheels.py                  # writes .whl/ (git-ignored)

What travels to the GPU machine is limited (64 MiB with the working tree). Ray's wheel is
79 MB, 32 MB of it the Java runtime (``ray/jars/ray_dist.jar``) that a Python-only Ray
never loads, so the jar is dropped from the wheel (and from its RECORD). The script prints
the total size and fails when it is over ``--limit-mib``.

On the GPU machine, before ``gpu_check.sh`` (it does this itself when ``.whl/`` exists):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

#: what the GPU image lacks of the toolkit's runtime dependencies (and theirs), pinned to
#: the versions this project is tested with.
WHEELS = (
    "optuna==5.0.0", "alembic", "sqlalchemy", "greenlet", "mako", "colorlog",
    "ray==2.60.0", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    # Ray Train v2 (on by default, imported by Ray Tune's function trainable) needs pydantic
    "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types", "typing-inspection",
    "typing-extensions==4.16.0",  # pydantic needs >= 4.16, newer than some images hold
)  # not plotly (9 MiB): only `--interactive` HTML plots import it, and gpu_check draws none
#: what a Python-only Ray never loads.
RAY_DROP = ("ray/jars/",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def download(dest: Path, python: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, *WHEELS], check=True)


def strip_wheel(path: Path, drop: tuple[str, ...]) -> int:
    """Rewrite a wheel without the members under ``drop`` (and their RECORD lines);
    returns the bytes saved."""
    before = path.stat().st_size
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(x for x in lines if not x.startswith(drop)).encode()
            out.writestr(info, data)
    tmp.replace(path)
    return before - path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=".whl", help="output folder (default .whl)")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--limit-mib", type=float, default=56.0,
                        help="fail above this total (the working tree needs the rest)")
    args = parser.parse_args(argv)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    download(dest, args.python)
    for ray in dest.glob("ray-*.whl"):
        saved = strip_wheel(ray, RAY_DROP)
        print(f"{ray.name}: dropped {saved / 2**20:.1f} MiB of {', '.join(RAY_DROP)}")
    wheels = sorted(dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.1f} MiB  {w.name}")
    print(f"{total:7.1f} MiB  in {len(wheels)} wheels under {dest}/")
    if total > args.limit_mib:
        print(f"gpu_wheels: {total:.1f} MiB is over --limit-mib {args.limit_mib}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
