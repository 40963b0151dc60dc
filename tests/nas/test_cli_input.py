"""What a new user types, through the command line as typed (subprocess), with no search
run: bad input gets ONE line naming what is wrong and exit 2, never a traceback or a
hang, and nothing is written; the CLI's conventions (bare `nas`, --version, -q/-v,
plain help text, -o/--output, quiet exit on a closed pipe); AA width notes; a copied
study finds its shipped baselines; the dry-run's data and budget checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "data" / "tiny_search.yaml"
SMALL = {"version": 1, "name": "small", "input": {"channels": 3, "size": [16, 16]},
         "classes": 10, "stem": {"kind": "conv", "channels": 32},
         "stages": [{"channels": 32, "stride": 1, "blocks": [{"type": "basic"}]}]}


def nas(*argv: str, cwd: Path | None = None, timeout: float = 600,
        **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess, verb: str) -> str:
    """The contract for bad input: exit 2, one stderr line `nas VERB: error: ...`
    (argparse's usage lines may precede it), no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"nas {verb}: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def _alias_bomb() -> str:
    lines = [yaml.safe_dump(SMALL, sort_keys=False).rstrip(), "meta:",
             '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _aa(**block) -> str:
    spec = json.loads(json.dumps(SMALL))
    spec["stages"][0]["blocks"] = [{"type": "aa", **block}]
    return yaml.safe_dump(spec)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("input")
    out = {"root": root}
    for name, text in {"bomb": _alias_bomb(),
                       "upsilon": _aa(kappa=0.25, upsilon=1.5, heads=2),
                       "aa_explicit": _aa(dk=8, dv=8, heads=3),
                       "aa_derived": _aa(kappa=0.25, upsilon=0.25, heads=3)}.items():
        out[name] = root / f"{name}.yaml"
        out[name].write_text(text)
    out["binary"] = root / "binary.yaml"
    out["binary"].write_bytes(bytes(range(256)) * 8)
    return out


# (verb argv with {placeholders}, the verb, words the error line must contain,
#  a path that must NOT exist afterwards or None)
BAD = [
    (["build", "{bomb}"], "build", ["meta", "100,000 values"], None),
    (["build", "{binary}"], "build", ["binary.yaml", "not a YAML text file"], None),
    (["search", "{binary}", "--dry-run"], "search", ["binary.yaml", "not a YAML text file"],
     None),
    (["search", "{tiny}", "--seed", "-3", "-o", "{root}/seeded"], "search",
     ["--seed", "-3", "2**32-1"], "{root}/seeded"),
    (["search", "{tiny}", "--seed", "4294967296", "--out", "{root}/big"], "search",
     ["--seed", "4294967296"], "{root}/big"),
    (["search", "{tiny}", "--concurrency", "0", "--dry-run"], "search",
     ["--concurrency", "0 is not a positive integer"], None),
    (["search", "{tiny}", "--concurrency", "0", "-o", "{root}/conc"], "search",
     ["--concurrency", "0 is not a positive integer"], "{root}/conc"),
    (["search", "{tiny}", "--budget", "-5gpuh", "-o", "{root}/neg"], "search",
     ["--budget", "-5gpuh", "positive"], "{root}/neg"),
    (["search", "{tiny}", "--budget=-5gpuh", "--dry-run"], "search",
     ["--budget", "-5gpuh", "positive"], None),
    (["train", "{small}", "--study", "{tiny}", "--device", "tpu", "-o", "{root}/tpu"],
     "train", ["--device", "'tpu' is not a device"], "{root}/tpu"),
    (["search", "{tiny}", "--device", "tpu", "--dry-run"], "search",
     ["--device", "'tpu' is not a device"], None),
    (["build", "{upsilon}"], "build", ["stages[0].blocks[0].upsilon", "0 < upsilon <= 1"],
     None),
    (["build", "{aa_explicit}"], "build", ["stages[0].blocks[0].heads", "3 does not divide dk=8"],
     None),
    (["report", "{tiny}", "-o", "{root}"], "report", ["not a nas run directory"], None),
    # an option the verb does not have is the verb's error, not the top-level parser's
    (["search", "{tiny}", "--alpha", "2", "-o", "{root}/alpha"], "search",
     ["unrecognized arguments: --alpha 2"], "{root}/alpha"),
]
if not torch.cuda.is_available():
    BAD += [
        (["train", "{small}", "--study", "{tiny}", "--device", "cuda", "-o", "{root}/cuda"],
         "train", ["--device cuda", "no CUDA device"], "{root}/cuda"),
        (["search", "{tiny}", "--device", "cuda", "-o", "{root}/cudarun"], "search",
         ["--device cuda", "no CUDA device"], "{root}/cudarun"),
    ]


@pytest.mark.parametrize("argv,verb,words,absent", BAD,
                         ids=[" ".join(b[0][:1] + b[0][2:4]) for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, argv, verb, words, absent):
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(SMALL))
    names = {**{k: str(v) for k, v in files.items()}, "tiny": str(TINY), "small": str(small)}
    proc = nas(*[a.format(**names) for a in argv], timeout=120)  # a hang guard (alias bomb)
    line = one_line_error(proc, verb)
    for word in words:
        assert word in line, line
    if absent is not None:
        assert not Path(absent.format(**names)).exists()


def test_bare_nas_version_help_and_verbosity():
    bare = nas()
    assert bare.returncode == 0 and bare.stdout.startswith("usage: nas")
    assert "search" in bare.stdout and not bare.stderr
    version = nas("--version")
    assert version.returncode == 0 and version.stdout.strip() == "nas 0.1.0"
    for verb in ("search", "train", "status", "pareto", "report", "export", "rank", "build"):
        text = nas(verb, "--help").stdout
        assert "``" not in text and ":func:" not in text, verb
        assert "-q" in text and "-v" in text, verb
    search = nas("search", "--help").stdout
    assert "-o RUN_DIR, --output RUN_DIR, --out RUN_DIR" in search
    for verb in ("train", "rank", "search"):  # every verb that runs models
        assert "--device D" in nas(verb, "--help").stdout, verb
    quiet = nas("-q", "zoo")
    assert quiet.returncode == 0 and "resnet18-cifar" in quiet.stdout
    assert nas("zoo", "-v").returncode == 0


def test_closed_pipe_exits_quietly():
    """`nas zoo | head -0`: the reader is gone before we write; no BrokenPipeError."""
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "zoo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_aa_rounding_is_reported_by_build_and_show(files):
    note = ("stages[0].blocks[0] (aa): dk 9 = kappa 0.25 x 32 channels = 8, rounded to a "
            "multiple of heads 3")
    build = nas("build", str(files["aa_derived"]))
    assert build.returncode == 0 and note in build.stdout, build.stdout
    show = nas("show", str(files["aa_derived"]))
    assert show.returncode == 0 and f"note: {note}" in show.stdout
    info = json.loads(nas("build", str(files["aa_derived"]), "--json").stdout)
    assert any(n.startswith("stages[0].blocks[0] (aa): dv 9") for n in info["notes"])
    assert "note" not in nas("build", _write(files["root"] / "plain.yaml", SMALL)).stdout


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_copied_study_and_budget_notes_in_the_dry_run(tmp_path):
    """An unmodified copy of studies/digits.yaml elsewhere finds the shipped baselines;
    the plan says how device hours are counted on CPUs and that 1e9gpuh exceeds the space."""
    copy = tmp_path / "elsewhere" / "digits.yaml"
    copy.parent.mkdir()
    copy.write_text((REPO / "studies" / "digits.yaml").read_text())
    proc = nas("search", str(copy), "--dry-run", "--json", "--budget", "1e9gpuh",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [Path(b).name for b in plan["baselines"]] == [
        "resnet-digits.yaml", "aa-resnet-digits.yaml", "eaanet-digits.yaml"]
    assert all(Path(b).is_file() for b in plan["baselines"])
    assert any("CPU-worker hours" in n for n in plan["notes"])
    assert any("over budget" in n for n in plan["notes"])
    assert any(f"the space has {plan['space']['size']:,} architectures" in w
               for w in plan["warnings"])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for c in ("ant", "bee", "cat"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(4):
            pixels = (rng.random((8, 8, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(root / "train" / c / f"{i}.png")
    (root / "train" / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return root


def _folder_study(tmp_path: Path, root: Path, classes: int) -> Path:
    study = {"version": 1, "name": "folder",
             "data": {"dataset": "imagefolder", "root": str(root), "size": [8, 8],
                      "val_fraction": 0.25},
             "training": {"epochs": 1, "batch_size": 4, "optimizer": "sgd", "lr": 0.05},
             "objectives": [{"metric": "accuracy", "direction": "maximize"}],
             "space": {"input": {"channels": 3, "size": [8, 8]}, "classes": classes,
                       "stem": {"kind": "conv", "channels": [4], "kernel": 3, "stride": 1},
                       "stages": [{"channels": [8], "depth": [1], "stride": 2,
                                   "blocks": ["basic"]}]},
             "budget": "2trials"}
    return Path(_write(tmp_path / f"folder{classes}.yaml", study))


def test_dry_run_checks_image_folder_classes(tmp_path, image_folder):
    proc = nas("search", str(_folder_study(tmp_path, image_folder, 200)), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert ("warning   dataset has 3 classes (class folders in "
            f"{image_folder.resolve()}) but the study has 200") in proc.stdout
    ok = nas("search", str(_folder_study(tmp_path, image_folder, 3)), "--dry-run")
    assert "classes" not in "".join(ln for ln in ok.stdout.splitlines()
                                    if ln.startswith("warning"))


def test_corrupt_image_is_one_line_naming_the_file(tmp_path, image_folder):
    spec = dict(SMALL, input={"channels": 3, "size": [8, 8]}, classes=3)
    proc = nas("train", _write(tmp_path / "s.yaml", spec), "--study",
               str(_folder_study(tmp_path, image_folder, 3)), "-o", str(tmp_path / "t"),
               "--device", "cpu")
    line = one_line_error(proc, "train")
    assert f"image {image_folder / 'train' / 'bee' / 'broken.png'} cannot be read" in line
    assert "not an image file PIL recognises" in line


def test_profile_device_checks_its_output_before_measuring(tmp_path):
    """A profile takes minutes to measure: an --out that cannot be written is said at
    once, before any measurement (no progress lines), not after."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    proc = nas("profile-device", "--quick", "--out", str(blocker / "p.yaml"), timeout=120)
    line = one_line_error(proc, "profile-device")
    assert "--out" in line and "cannot write it" in line
    assert proc.stderr.strip().splitlines() == [line]  # nothing was measured
    line = one_line_error(nas("profile-device", "--quick", "--out", str(tmp_path),
                              timeout=120), "profile-device")
    assert "is a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
