#!/usr/bin/env bash
# Everything the toolkit claims about GPUs, checked on one real GPU in about 9 minutes
# (an H100, 2026-11-27: tests 69 s, search 135 s at a 100 s budget, now 75 s,
# train_throughput 133 s with 25k images, now 10k, latency_fidelity 30 s; profile_device
# and attention_scaling had not finished inside their limits then; the limits add up to
# 14 minutes; each is capped so the others still run; GPU_CHECK_LIMIT_SCALE multiplies
# them, 8 by default in a dry run).
#
#   bash benchmarks/gpu_check.sh                    # on a machine with a CUDA GPU
#   python benchmarks/gpu_wheels.py                 # first, where the GPU machine has no
#                                                   # registry: .whl/ travels with the tree
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh    # CPU dry run: every step, tiny, on
#                                                   # the CPU, into a temporary folder
#   GPU_CHECK_ONLY="search train_throughput" bash benchmarks/gpu_check.sh
#                                                   # rerun only these steps (their lines
#                                                   # are added to steps.jsonl)
# Where one command may run at most 10 minutes (a lent GPU machine), run it as two:
#   GPU_CHECK_ONLY="env cuda_tests search search_summary train_throughput" ...   (~6 min)
#   GPU_CHECK_ONLY="profile_device profile_fidelity latency_fidelity attention_scaling" ...
# (the second ~6.5 min at its limits; a profile it leaves unfinished, the next run of
# profile_device continues); with GPU_CHECK_ONLY, steps.jsonl is appended to.
#
# Writes benchmarks/results/cuda/ (dry run: $GPU_CHECK_OUT or a new temp folder):
#   env.json                 device name, memory, torch, CUDA and cuDNN versions, date
#   steps.jsonl              one line per step: name, exit code, seconds, timed out
#   logs/<step>.log          each step's output
#   cuda_tests.xml           the CUDA-only tests (tests/nas/test_cuda.py), JUnit XML
#   search/ + search.json    a ~2.5 min real search, gpus_per_trial: auto, several trials
#                            on the GPU at once, a giant baseline that runs out of memory
#   train_throughput.{json,png}, device_profile-<gpu>.yaml, profile_fidelity.{json,png},
#   latency_fidelity.{json,png}, attention_scaling.{json,png}
# and copies the measured profile to nas/profiles/<gpu name>.yaml once it is complete (a
# stopped one is continued by the next run; not in a dry run).
# Where $OUT names a folder (a lent machine's result folder) everything above is also
# packed into $OUT/gpu_check.tgz: such machines send back only a few files.
# Each step runs under `timeout`, so a slow one cannot eat the others, and a failing
# step is recorded and the script goes on; the exit code is the number of failed steps.
# Steps run in order of importance, in case the GPU time is cut short.
set -u
cd "$(dirname "$0")/.."
# A bare GPU machine has torch but not Optuna or Ray: `python benchmarks/gpu_wheels.py`
# prepares .whl/ on a machine with registries, and the wheels travel with the tree.
if [ -d .whl ] && ! python3 -c "import optuna, ray" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: installing .whl/ failed" >&2; exit 2; }
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
  export PATH=/tmp/site/bin:$PATH
  # run from the source tree: the package `nas.studies` is the folder studies/ (an
  # install maps it; here a link does)
  [ -e nas/studies ] || ln -s ../studies nas/studies
fi
# The device tool's result folder (files written there come back); RES is ours.
BUNDLE_TO=${OUT:-}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DRY=${GPU_CHECK_DRY:-0}
if [ "$DRY" = 1 ]; then
  RES=${GPU_CHECK_OUT:-$(mktemp -d -t gpu-check-dry-XXXX)}
  DEV=cpu
  SCALE=${GPU_CHECK_LIMIT_SCALE:-8}  # a shared CPU is slow to even import torch
else
  RES=benchmarks/results/cuda
  DEV=cuda
  SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); for a CPU dry" \
         "run use GPU_CHECK_DRY=1" >&2; exit 2; }
fi
mkdir -p "$RES/logs"
ONLY=${GPU_CHECK_ONLY:-}
for name in $ONLY; do
  case " env cuda_tests search search_summary train_throughput profile_device profile_fidelity \
latency_fidelity attention_scaling " in *" $name "*) ;;
    *) echo "gpu_check: GPU_CHECK_ONLY names no step '$name'" >&2; exit 2 ;; esac
done
[ -n "$ONLY" ] || : > "$RES/steps.jsonl"
FAILED=0
START=$(date +%s)

# step NAME LIMIT_S COMMAND...: run it under timeout, log it, record how it went.
step() {
  local name=$1 limit=$(( $2 * SCALE )); shift 2
  local t0 rc
  case " $ONLY " in "  " | *" $name "*) ;; *) return 0 ;; esac
  t0=$(date +%s)
  echo "== $name (limit ${limit}s)" >&2
  timeout --kill-after=15 "$limit" "$@" > "$RES/logs/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local timed_out=false
  { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && timed_out=true
  printf '{"step": "%s", "rc": %d, "seconds": %d, "timed_out": %s, "limit_s": %d}\n' \
    "$name" "$rc" "$secs" "$timed_out" "$limit" >> "$RES/steps.jsonl"
  if [ $rc -ne 0 ]; then
    FAILED=$((FAILED + 1))
    echo "   FAILED rc=$rc after ${secs}s (timed out: $timed_out); tail of the log:" >&2
    tail -n 5 "$RES/logs/$name.log" >&2
  else
    echo "   ok in ${secs}s" >&2
  fi
}

step env 45 "$PY" -c "
import datetime, json, platform, torch
from search_space.measure import device_name
dev = torch.device('$DEV')
info = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'device': '$DEV', 'device_name': device_name(dev), 'torch': str(torch.__version__),
        'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
        'python': platform.python_version(), 'dry_run': $DRY == 1}
if dev.type == 'cuda':
    p = torch.cuda.get_device_properties(dev)
    info.update(memory_mb=p.total_memory / 2**20, capability=f'{p.major}.{p.minor}',
                gpus=torch.cuda.device_count())
open('$RES/env.json', 'w').write(json.dumps(info, indent=1))
print(json.dumps(info))"

step cuda_tests 100 "$PY" -m pytest -q -rs tests/nas/test_cuda.py --junitxml="$RES/cuda_tests.xml"

if [ "$DRY" = 1 ]; then  # CPU trials, a few of them; no giant baseline (a host OOM)
  step search 120 "$PY" -c "
import yaml
from nas.search.driver import run_search
s = yaml.safe_load(open('benchmarks/gpu_check/study.yaml'))
s['resources'] = {'concurrency': 2, 'cpus_per_trial': 1, 'gpus_per_trial': 0}
s['data']['synthetic'].update(train=128, val=32, size=[16, 16])
s['space']['input']['size'] = [16, 16]
s['training'].update(epochs=1, batch_size=32)
s['measure'].update(batch_size=1, warmup=0, repeats=1)
s['budget'] = '2trials'
s['baselines'] = []
run_search(s, run_dir='$RES/search', progress=False)"
else
  step search 150 "$PY" -m nas.cli search benchmarks/gpu_check/study.yaml \
    --out "$RES/search" --with-baselines
fi
step search_summary 30 "$PY" benchmarks/_gpu_search_summary.py "$RES/search" "$RES/search.json"

if [ "$DRY" = 1 ]; then
  step train_throughput 60 "$PY" benchmarks/train_throughput.py --device cpu --json \
    --models resnet18-cifar --seeds 0 --steps 1 --batch 4 --train-images 40 \
    --test-images 8 --out "$RES/train_throughput.json"
  step profile_device 60 "$PY" -m nas.cli profile-device --device cpu --quick --batch 1 \
    --out "$RES/device_profile.yaml"
  step profile_fidelity 45 "$PY" benchmarks/profile_fidelity.py --device cpu \
    --profile "$RES/device_profile.yaml" --studies digits --samples 2 --warmup 0 \
    --repeats 1 --out "$RES/profile_fidelity.json"
  step latency_fidelity 45 "$PY" benchmarks/latency_fidelity.py --device cpu --batch 1 \
    --zoo resnet18-cifar --studies digits --samples 1 --warmup 0 --repeats 1 --no-rss \
    --out "$RES/latency_fidelity.json"
  step attention_scaling 60 "$PY" benchmarks/attention_scaling.py --device cpu \
    --parts kernels --kernels full linear --sizes 8 --min-repeats 1 --time-budget 0.1 \
    --out "$RES/attention_scaling.json"
else
  # 10k written images (not the 25k default): writing and reading them is the step's
  # fixed cost, and 60 steps of 256 use 15k
  step train_throughput 150 "$PY" benchmarks/train_throughput.py --device cuda --json \
    --steps 60 --train-images 10000 --test-images 2000 --out "$RES/train_throughput.json"
  gpu=$("$PY" -c "
import re, torch
print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(0).lower()).strip('-'))")
  profile="$RES/device_profile-$gpu.yaml"
  # A full profile may need more than one lease's share: it is saved after every curve
  # and the next run (the file comes back with the results) continues it.
  step profile_device 180 "$PY" -m nas.cli profile-device --device cuda --out "$profile"
  if [ -f "$profile" ] && "$PY" -c "
import sys, yaml
sys.exit(0 if yaml.safe_load(open(sys.argv[1])).get('complete', True) else 1)" "$profile"
  then
    cp "$profile" "nas/profiles/$gpu.yaml"
  fi
  step profile_fidelity 60 "$PY" benchmarks/profile_fidelity.py --device cuda \
    --profile "$profile" --samples 5 --out "$RES/profile_fidelity.json"
  step latency_fidelity 35 "$PY" benchmarks/latency_fidelity.py --device cuda --batch 8 \
    --zoo resnet18-cifar aa-resnet18-cifar eaanet-concat-longformer resnet50 aa-resnet50 \
    --samples 2 --repeats 10 --out "$RES/latency_fidelity.json"
  step attention_scaling 100 "$PY" benchmarks/attention_scaling.py --device cuda \
    --parts kernels --sizes 32 64 128 --min-repeats 3 --time-budget 0.5 \
    --out "$RES/attention_scaling.json"
fi

echo "gpu_check: $FAILED failed step(s) in $(( $(date +%s) - START ))s; results in $RES" >&2
# Only a few files come back from a lent machine: one archive of everything written.
if [ -n "$BUNDLE_TO" ] && [ -d "$BUNDLE_TO" ]; then
  tar czf "$BUNDLE_TO/gpu_check.tgz" "$RES" nas/profiles && \
    echo "gpu_check: bundled into $BUNDLE_TO/gpu_check.tgz" >&2
fi
exit "$FAILED"
