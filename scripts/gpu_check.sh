#!/usr/bin/env bash
# The GPU check: one command that turns a lent GPU machine (no network) into proof of the
# CuPy path, beside PyTorch CUDA and JAX on the same GPU, within 6 minutes.
#   preflight  the carried folders against their SHA256SUMS; the carried wheels installed
#              offline into a private folder; then, each in its own process under timeout:
#              one NVRTC-compiled elementwise kernel and one cuBLAS matrix product on CuPy,
#              one operation on torch cuda:0 and on JAX's GPU, with their versions and
#              build reports (cupy.show_config()...), so what is missing is said in seconds;
#   tests-cupy, tests-torch, tests-jax
#              the suite's backend cases with --backend cupy, with torch on cuda:0, with
#              JAX on cuda:0 (each only where its probe passed; else "missing" and why);
#   benchmark  benchmarks/gpu_window.py: the book's 9,352 on each backend, then host
#              uint8 to labels and resident, 10,000 and 1,000,000 images, CuPy beside
#              PyTorch CUDA (xpnet's and a hand-written addmm) and JAX (xpnet's and
#              jax.jit), synchronised and warmed, sized by its time budget.
# Every step writes its record when it ends (summary.json and summary.txt are rewritten,
# bench.json after each case), so a timeout keeps everything before it. Each step runs
# under `timeout -k`, inside one overall deadline.
#
# Results go to $XPNET_GPU_RESULTS (default $OUT/gpu-check where OUT is set, as on the
# device machine, else ./gpu-results): at most 8 files, so that all of them come back:
#   summary.txt, summary.json   the table and the record of every step, versions included;
#   preflight.log               sums, install, each probe's report;
#   tests.log                   the three test steps' output, one after the other;
#   bench.json, bench.log       the benchmark's cases and its progress lines;
#   kernels.tar.gz              CuPy's kernel cache (CUPY_CACHE_DIR, inside the results
#                               while the check runs), to carry into a rerun.
# Exit status: 0 when every step passed; 1 when a step failed or timed out; 2 when
# something it needs is missing (no GPU, a carried folder, a framework's probe).
#
# What the host lacks travels with the working tree (both ignored by git; made where pip
# reaches PyPI by scripts/gpu_prepare.sh): .whl/ (wheels for Python 3.12, SHA256SUMS) and
# .gpu-data/ (the MNIST test split and the book's weights, SHA256SUMS); XPNET_GPU_WHEELS and
# XPNET_GPU_DATA point elsewhere. A carried .gpu-kernels.tar.gz (a previous kernels.tar.gz)
# seeds the kernel cache.
#
# Rehearsal on a CPU machine: XPNET_GPU_CHECK_REHEARSAL=1 with a stand-in `nvidia-smi` on
# PATH runs the same steps with array_api_strict's device1 standing in for cupy and
# torch's and JAX's cpu for cuda:0, labelled REHEARSAL; the probes still run and say what a
# GPU would need. Settings: XPNET_GPU_CHECK_DEADLINE (seconds, default 345),
# XPNET_GPU_CHECK_BENCH_BUDGET (the benchmark's seconds, default 60),
# XPNET_GPU_CHECK_WORKERS (pytest-xdist processes per test step where it is installed, as
# on the image; default a quarter of the cores, at most 4; 1 for none), XPNET_GPU_CHECK_TEST_SECONDS (each test step's limit; default 110 for cupy, 60 for
# torch, 120 for jax), XPNET_GPU_CHECK_PYTEST_ARGS (added to each test step, split at spaces),
# XPNET_GPU_CHECK_ONLY (the frameworks to probe and test, e.g. "jax"; default all three),
# XPNET_GPU_CHECK_BENCH=0 (no benchmark).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [ -n "${XPNET_GPU_RESULTS:-}" ]; then
    results=$XPNET_GPU_RESULTS
elif [ -n "${OUT:-}" ]; then
    results=$OUT/gpu-check
else
    results=./gpu-results
fi
wheels=${XPNET_GPU_WHEELS:-.whl}
data=${XPNET_GPU_DATA:-.gpu-data}
python=${PYTHON:-python3}
rehearsal=${XPNET_GPU_CHECK_REHEARSAL:-0}
deadline=$((SECONDS + ${XPNET_GPU_CHECK_DEADLINE:-345}))
bench_budget=${XPNET_GPU_CHECK_BENCH_BUDGET:-60}
read -r -a pytest_extra <<< "${XPNET_GPU_CHECK_PYTEST_ARGS:-}"
read -r -a frameworks <<< "${XPNET_GPU_CHECK_ONLY:-cupy torch jax}"
cores=$(nproc 2> /dev/null || echo 1)
default_workers=$((cores / 4 > 4 ? 4 : cores / 4)) # 4 on the lent machines' 16 cores
workers_wanted=${XPNET_GPU_CHECK_WORKERS:-$default_workers}
kill_after=10  # seconds between timeout's TERM and its KILL, for a process stuck in the driver

if [ "$rehearsal" = 1 ]; then
    mode="REHEARSAL (array_api_strict's device1 stands in for cupy, the cpu for cuda:0)"
    declare -A tests=(
        [cupy]="--backend array_api_strict --device device1"
        [torch]="--backend torch --device cpu"
        [jax]="--backend jax --device default"
    )
    bench_mode=(--cpu)
else
    mode="GPU"
    declare -A tests=(
        [cupy]="--backend cupy"
        [torch]="--backend torch --device cuda:0"
        [jax]="--backend jax --device cuda:0"
    )
    bench_mode=()
fi

mkdir -p "$results" || {
    echo "gpu_check: cannot create $results" >&2
    exit 2
}
results=$(cd "$results" && pwd)
for name in summary.json summary.txt preflight.log tests.log bench.json bench.log kernels.tar.gz; do
    rm -f "${results:?}/$name" # this check's own files from an earlier run, and nothing else
done
work=$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu-check.XXXXXX") || exit 2
worst=0 # 0 passed, 1 failed, 2 missing
started=$(date -u '+%Y-%m-%d %H:%M UTC')
export PYTHONPATH="$work/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

record() { # record STEP STATUS SECONDS DETAIL [--outcomes JSONL]
    case $2 in
        failed | timeout) [ "$worst" -ge 1 ] || worst=1 ;;
        missing) worst=2 ;;
    esac
    "$python" -m benchmarks.gpu_check record "$results" "$1" "$2" "$3" "$4" "${@:5}" \
        --mode "$mode" --date "$started" ||
        echo "gpu_check [$mode]: $1: $2 ($4)"
}

left() { # seconds for a step wanting $1, within the overall deadline (at least 1)
    local remaining=$((deadline - SECONDS))
    if [ "$remaining" -lt "$1" ]; then echo $((remaining > 1 ? remaining : 1)); else echo "$1"; fi
}

finish() {
    if [ -d "$results/kernels" ]; then
        tar -czf "$results/kernels.tar.gz" -C "$results" kernels 2> /dev/null
        rm -rf "$results/kernels"
    fi
    "$python" -m benchmarks.gpu_check finish "$results" "$mode" "$worst" ||
        echo "gpu_check [$mode]: exit status $worst"
    rm -rf "$work"
    exit "$worst"
}
trap finish INT TERM

# --- preflight ------------------------------------------------------------------------------
log=$results/preflight.log
: > "$log"
if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
    record gpu missing 0 "nvidia-smi lists no NVIDIA GPU: nothing can be checked here"
    finish
fi
{
    echo "mode: $mode"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1
} >> "$log" 2>&1
record gpu passed 0 "$(nvidia-smi -L | grep '^GPU ' | head -1)"
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11); import numpy, pytest' \
    >> "$log" 2>&1; then
    record python missing 0 "$python is not Python 3.11+ with numpy and pytest"
    finish
fi
start=$SECONDS
for folder in "$wheels" "$data"; do
    if [ ! -f "$folder/SHA256SUMS" ]; then
        record carried missing 0 "$folder/SHA256SUMS absent: run scripts/gpu_prepare.sh and carry $folder"
    elif ! (cd "$folder" && sha256sum --quiet --strict -c SHA256SUMS) >> "$log" 2>&1; then
        record carried missing 0 "$folder does not match its SHA256SUMS (preflight.log)"
    fi
done
[ "$worst" = 0 ] || finish
shopt -s nullglob
carried=("$wheels"/*.whl)
shopt -u nullglob
if [ "${#carried[@]}" = 0 ]; then
    record carried missing 0 "no wheels in $wheels"
    finish
fi
echo "--- install: ${#carried[@]} wheels into $work/site" >> "$log"
if "$python" -m pip --version > /dev/null 2>&1; then
    timeout -k "$kill_after" "$(left 60)" "$python" -m pip install --quiet --no-index --no-deps \
        --no-compile --no-cache-dir --disable-pip-version-check --target "$work/site" \
        "${carried[@]}" >> "$log" 2>&1
else # no pip on the host: unpacking is all that --target does with these wheels
    timeout -k "$kill_after" "$(left 60)" "$python" -c 'import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])' "$work/site" "${carried[@]}" >> "$log" 2>&1
fi
status=$?
if [ "$status" != 0 ]; then
    record carried failed $((SECONDS - start)) "installing the wheels failed ($status): preflight.log"
    finish
fi
record carried passed $((SECONDS - start)) "$(grep -c . "$wheels/SHA256SUMS") wheels, \
$(grep -c . "$data/SHA256SUMS") data files verified; wheels installed"

export XPNET_DATA_DIR="$data/mnist" XPNET_BOOK_WEIGHTS="$data/book/sample_weight.pkl"
export XPNET_CACHE_DIR="$work/cache" MPLBACKEND=Agg PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR="$results/kernels" KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false # CuPy, PyTorch and JAX share the GPU in one run
mkdir -p "$CUPY_CACHE_DIR"
[ -f .gpu-kernels.tar.gz ] && tar -xzf .gpu-kernels.tar.gz -C "$results" 2>> "$log"

declare -A ready=()
for framework in "${frameworks[@]}"; do
    start=$SECONDS
    echo "--- probe $framework" >> "$log"
    timeout -k "$kill_after" "$(left 60)" "$python" -m benchmarks.gpu_check probe "$framework" \
        > "$work/probe.out" 2>> "$log"
    status=$?
    cat "$work/probe.out" >> "$log"
    detail=$(tail -1 "$work/probe.out" | "$python" -c \
        'import json, sys; print(json.loads(sys.stdin.read())["detail"])' 2> /dev/null)
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        detail="no answer within the probe's time (a driver that hangs?)"
    fi
    detail=${detail:-"the probe printed no result: preflight.log"}
    if [ "$status" = 0 ]; then
        ready[$framework]=1
        record "$framework" passed $((SECONDS - start)) "$detail"
    elif [ "$rehearsal" = 1 ]; then
        ready[$framework]=1 # the stand-ins run on the CPU; the probe said what a GPU lacks
        record "$framework" rehearsed $((SECONDS - start)) "would be missing on a GPU: $detail"
    else
        record "$framework" missing $((SECONDS - start)) "$detail"
    fi
done

# --- the test suite, one backend at a time ---------------------------------------------------
# JAX compiles each test's functions (jax.jit): its step gets the most time; all of them
# still end by the deadline.
declare -A want=([cupy]=110 [torch]=60 [jax]=120)
if [ -n "${XPNET_GPU_CHECK_TEST_SECONDS:-}" ]; then
    want=([cupy]=$XPNET_GPU_CHECK_TEST_SECONDS [torch]=$XPNET_GPU_CHECK_TEST_SECONDS
        [jax]=$XPNET_GPU_CHECK_TEST_SECONDS)
fi
for framework in "${frameworks[@]}"; do
    step=tests-$framework
    if [ -z "${ready[$framework]:-}" ]; then
        record "$step" missing 0 "its probe failed (above): not run"
        continue
    fi
    start=$SECONDS
    read -r -a selection <<< "${tests[$framework]}"
    echo "=== $step: pytest ${tests[$framework]} ${pytest_extra[*]}" >> "$results/tests.log"
    workers=()
    if [ "$workers_wanted" -gt 1 ] && "$python" -c 'import xdist' 2> /dev/null; then
        workers=(-n "$workers_wanted")
    fi
    outcomes=$work/$step.jsonl
    : > "$outcomes"
    x64=0 # as the nox sessions: JAX's tests run with float64 enabled, as on the other backends
    [ "$framework" = jax ] && x64=1
    JAX_ENABLE_X64=$x64 XPNET_GPU_CHECK_OUTCOMES=$outcomes \
        timeout -k "$kill_after" "$(left "${want[$framework]}")" \
        "$python" -m pytest tests -q -p no:cacheprovider -p no:randomly -p benchmarks.gpu_check \
        "${workers[@]}" "${selection[@]}" "${pytest_extra[@]}" >> "$results/tests.log" 2>&1
    status=$?
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        record "$step" timeout $((SECONDS - start)) "stopped at its time limit" --outcomes "$outcomes"
    elif [ "$status" = 0 ]; then
        record "$step" passed $((SECONDS - start)) "tests.log" --outcomes "$outcomes"
    else
        record "$step" failed $((SECONDS - start)) "pytest status $status; tests.log" \
            --outcomes "$outcomes"
    fi
done

# --- the benchmark ---------------------------------------------------------------------------
if [ "${XPNET_GPU_CHECK_BENCH:-1}" = 0 ]; then
    record benchmark skipped 0 "XPNET_GPU_CHECK_BENCH=0"
    finish
fi
start=$SECONDS
room=$(($(left $((bench_budget + 40))) - 40)) # its budget, less its start-up and loading
if [ "$room" -lt 5 ]; then
    record benchmark timeout 0 "under 45 s of the check's time left: not run"
    finish
fi
timeout -k "$kill_after" $((room + 35)) "$python" -m benchmarks.gpu_window "${bench_mode[@]}" \
    --weights "$XPNET_BOOK_WEIGHTS" --data-dir "$XPNET_DATA_DIR" --budget "$room" \
    --out "$results/bench.json" > "$results/bench.log" 2>&1
status=$?
detail=$("$python" -m benchmarks.gpu_check bench-detail "$results")

if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    record benchmark timeout $((SECONDS - start)) "$detail (kept: bench.json)"
elif [ "$status" = 0 ]; then
    record benchmark passed $((SECONDS - start)) "$detail"
else
    record benchmark failed $((SECONDS - start)) "status $status, $detail; bench.log"
fi
finish
