#!/usr/bin/env bash
# The GPU check: the one command to run on a machine with an NVIDIA GPU and no network.
#   0. checks what it needs: a GPU (nvidia-smi), Python with numpy, pytest and CuPy, the
#      carried folders, verified against their SHA256SUMS;
#   1. installs the carried wheels (.whl/) into a private folder, offline;
#   2. the whole test suite with --backend cupy;
#   3. the whole test suite with torch on cuda:0, where a CUDA build of torch is installed
#      (else that step says so and counts as absent, not failed);
#   4. the GPU benchmark (scripts/benchmark.py: CuPy beside PyTorch CUDA where it is there,
#      synchronized, warmed up; JAX kept on the CPU, without preallocation);
#   5. one summary table.
# Everything it writes goes to $XPNET_GPU_RESULTS (default ./gpu-results): one log per step,
# pytest's JUnit XML, bench.json, env.txt, summary.txt and summary.json, to copy off the
# machine. Exit status: 0 when every step passed; 1 when a test or step failed or timed out;
# 2 when something it needs is missing (no GPU, no CuPy, a folder, a sum that does not match).
# Each step runs under `timeout`, within an overall deadline (XPNET_GPU_CHECK_DEADLINE
# seconds, default 470), so a hang is reported as a timeout, not waited out.
#
# What the GPU host lacks travels with the working tree (both ignored by git; made where
# pip reaches PyPI by scripts/gpu_prepare.sh):
#   .whl/       wheels for Python 3.12 and their SHA256SUMS (XPNET_GPU_WHEELS to override);
#   .gpu-data/  the MNIST files and book/sample_weight.pkl, with SHA256SUMS (XPNET_GPU_DATA).
#
# Rehearsal on a CPU machine: XPNET_GPU_CHECK_REHEARSAL=1 with a stand-in `nvidia-smi` on
# PATH runs the same steps with --backend numpy in place of cupy and torch's cpu in place of
# cuda:0, labelled REHEARSAL throughout. XPNET_GPU_CHECK_PYTEST_ARGS adds pytest arguments
# to both test steps, split at spaces (e.g. "-k softmax"); XPNET_GPU_CHECK_ROUNDS sets the benchmark's rounds;
# XPNET_GPU_CHECK_BENCH=0 leaves the benchmark out.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

results=${XPNET_GPU_RESULTS:-./gpu-results}
wheels=${XPNET_GPU_WHEELS:-.whl}
data=${XPNET_GPU_DATA:-.gpu-data}
python=${PYTHON:-python3}
rehearsal=${XPNET_GPU_CHECK_REHEARSAL:-0}
deadline=$((SECONDS + ${XPNET_GPU_CHECK_DEADLINE:-470}))
read -r -a pytest_extra <<< "${XPNET_GPU_CHECK_PYTEST_ARGS:-}"
rounds=${XPNET_GPU_CHECK_ROUNDS:-15}

if [ "$rehearsal" = 1 ]; then
    label="REHEARSAL (numpy stands in for cupy, torch cpu for torch cuda:0)"
    gpu_backend=numpy
    torch_device=cpu
    bench_backends=(numpy)
else
    label="GPU"
    gpu_backend=cupy
    torch_device=cuda:0
    bench_backends=(numpy cupy)
fi

mkdir -p "$results" || { echo "gpu_check: cannot create $results" >&2; exit 2; }
results=$(cd "$results" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
rows=()      # one "step|status|seconds|detail" per step
worst=0      # 0 passed, 1 failed, 2 missing

say() { echo "gpu_check [$label]: $*"; }

record() {  # record STEP STATUS SECONDS DETAIL; STATUS: passed, failed, timeout, missing,
    # absent (torch CUDA not installed: said, not failed), skipped (asked to)
    rows+=("$1|$2|$3|$4")
    case $2 in
        failed | timeout) [ "$worst" -ge 1 ] || worst=1 ;;
        missing) worst=2 ;;
    esac
    say "$1: $2${4:+ ($4)}"
}

left() {  # seconds left for a step wanting $1 seconds, within the overall deadline
    local remaining=$((deadline - SECONDS))
    [ "$remaining" -lt "$1" ] && echo "$((remaining > 1 ? remaining : 1))" || echo "$1"
}

summary() {
    {
        echo "xpnet gpu_check, $label, $(date -u '+%Y-%m-%d %H:%M UTC')"
        printf '%-14s %-8s %8s  %s\n' step status seconds detail
        local row step status seconds detail
        for row in "${rows[@]}"; do
            IFS='|' read -r step status seconds detail <<< "$row"
            printf '%-14s %-8s %8s  %s\n' "$step" "$status" "$seconds" "$detail"
        done
        case $worst in
            0) echo "exit status 0: every step passed" ;;
            1) echo "exit status 1: a step failed or timed out" ;;
            *) echo "exit status 2: something the check needs is missing" ;;
        esac
    } | tee "$results/summary.txt"
    "$python" - "$results/summary.json" "$label" "$worst" "${rows[@]}" <<'EOF' || true
import json, sys
path, label, status, *rows = sys.argv[1:]
steps = [dict(zip(("step", "status", "seconds", "detail"), row.split("|", 3))) for row in rows]
json.dump({"mode": label, "exit_status": int(status), "steps": steps}, open(path, "w"), indent=1)
EOF
}

finish() { summary; exit "$worst"; }

# --- 0. what the check needs --------------------------------------------------------------
if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
    record gpu missing 0 "nvidia-smi lists no NVIDIA GPU: nothing can be checked here"
    finish
fi
gpu=$(nvidia-smi -L | grep '^GPU ' | head -1)
record gpu passed 0 "$gpu"
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2> /dev/null; then
    record python missing 0 "$python is not Python 3.11 or newer"
    finish
fi
for module in numpy pytest; do
    "$python" -c "import $module" 2> /dev/null || record python missing 0 "no $module for $python"
done
for folder in "$wheels" "$data"; do
    if [ ! -f "$folder/SHA256SUMS" ]; then
        record carried missing 0 "$folder/SHA256SUMS absent: run scripts/gpu_prepare.sh and carry $folder"
    elif ! (cd "$folder" && sha256sum --quiet --strict -c SHA256SUMS > "$work/sums.log" 2>&1); then
        record carried missing 0 "$folder does not match its SHA256SUMS: $(head -1 "$work/sums.log")"
    fi
done
[ "$worst" = 0 ] || finish
record carried passed 0 "$(grep -c . "$wheels/SHA256SUMS") wheels, $(grep -c . "$data/SHA256SUMS") data files verified"

# --- 1. install the carried wheels, offline ---------------------------------------------
site="$work/site"
start=$SECONDS
shopt -s nullglob
carried=("$wheels"/*.whl)
shopt -u nullglob
if [ "${#carried[@]}" = 0 ]; then
    record install missing 0 "no wheels in $wheels"
    finish
fi
if "$python" -m pip --version > /dev/null 2>&1; then
    timeout "$(left 60)" "$python" -m pip install --quiet --no-index --no-deps --no-compile \
        --no-cache-dir --disable-pip-version-check --target "$site" "${carried[@]}" \
        > "$results/install.log" 2>&1
else  # no pip on the host: unpack them, which is all that --target does with these wheels
    echo "no pip for $python: the wheels are unpacked" > "$results/install.log"
    timeout "$(left 60)" "$python" - "$site" "${carried[@]}" >> "$results/install.log" 2>&1 <<'PY'
import sys, zipfile
site, *wheels = sys.argv[1:]
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
PY
fi
if [ "$?" = 0 ]; then
    record install passed $((SECONDS - start)) "${#carried[@]} wheels into a private folder"
else
    record install failed $((SECONDS - start)) "see install.log: $(tail -1 "$results/install.log")"
    finish
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XPNET_DATA_DIR="$data/mnist" XPNET_BOOK_WEIGHTS="$data/book/sample_weight.pkl"
export XPNET_CACHE_DIR="$work/cache" MPLBACKEND=Agg
export JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX stays off the GPU

if [ "$gpu_backend" = cupy ]; then
    if ! "$python" -c 'import cupy; cupy.cuda.runtime.getDeviceCount()' > "$work/cupy.log" 2>&1; then
        record cupy missing 0 "CuPy cannot run here: $(tail -1 "$work/cupy.log")"
        finish
    fi
fi
{
    echo "mode: $label"
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4
    "$python" - <<'EOF' 2>&1
import importlib.metadata as m, platform
print("python:", platform.python_version())
for name in ("numpy", "cupy-cuda13x", "cupy-cuda12x", "cupy", "torch", "jax", "array-api-compat", "pytest"):
    try:
        print(f"{name}: {m.version(name)}")
    except m.PackageNotFoundError:
        pass
EOF
} > "$results/env.txt"

# --- 2, 3. the test suite -------------------------------------------------------------------
counts() {  # pytest's JUnit XML -> "P passed, F failed, E errors, S skipped"
    "$python" - "$1" <<'EOF' 2> /dev/null || echo "no report"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"{passed} passed, {total['failures']} failed, {total['errors']} errors, {total['skipped']} skipped")
EOF
}

run_tests() {  # run_tests STEP WANTED_SECONDS PYTEST_ARGS...
    local step=$1 wanted=$2 start=$SECONDS status
    shift 2
    timeout "$(left "$wanted")" "$python" -m pytest tests -q -p no:cacheprovider \
        --junitxml="$results/$step.xml" "$@" "${pytest_extra[@]}" > "$results/$step.log" 2>&1
    status=$?
    local detail
    detail="$(counts "$results/$step.xml"); see $step.log"
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        record "$step" timeout $((SECONDS - start)) "no result within the step's time; $detail"
    elif [ "$status" = 0 ]; then
        record "$step" passed $((SECONDS - start)) "$detail"
    else
        record "$step" failed $((SECONDS - start)) "pytest exit status $status: $detail"
    fi
}

run_tests "tests-$gpu_backend" 200 --backend "$gpu_backend"
torch_probe="import torch; assert '$torch_device' == 'cpu' or torch.cuda.is_available(), 'torch has no CUDA here'"
if "$python" -c "$torch_probe" > "$work/torch.log" 2>&1; then
    run_tests "tests-torch" 120 --backend torch --device "$torch_device"
else
    record tests-torch absent 0 "torch on $torch_device not available: $(tail -1 "$work/torch.log")"
fi

# --- 4. the benchmark -----------------------------------------------------------------------
start=$SECONDS
if [ "${XPNET_GPU_CHECK_BENCH:-1}" = 0 ]; then
    record benchmark skipped 0 "XPNET_GPU_CHECK_BENCH=0"
    finish
fi
timeout "$(left 120)" "$python" scripts/benchmark.py --weights "$XPNET_BOOK_WEIGHTS" \
    --data-dir "$XPNET_DATA_DIR" --backends "${bench_backends[@]}" --rounds "$rounds" \
    --gpu-rows 1000000 --json > "$results/bench.json" 2> "$results/bench.log"
status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    record benchmark timeout $((SECONDS - start)) "see bench.log"
elif [ "$status" != 0 ]; then
    record benchmark failed $((SECONDS - start)) "exit status $status: $(tail -1 "$results/bench.log")"
else
    detail=$("$python" - "$results/bench.json" <<'EOF' 2>&1
import json, sys
result = json.load(open(sys.argv[1]))
times = {v.get("name"): v.get("milliseconds") for v in result.get("variants", [])}
wanted = [n for n in times if n and ("cupy" in n or "cuda" in n)] or list(times)[:3]
parts = [f"{n} {times[n]:.3g} ms" for n in wanted if isinstance(times[n], (int, float))]
gpu = result.get("gpu_throughput")
if gpu:
    parts.append(f"resident {gpu['images_per_second']:.3g} images/s at {gpu['rows']:,} rows")
print("; ".join(parts) or "no variant timed", end="")
EOF
)
    record benchmark passed $((SECONDS - start)) "$detail; bench.json"
fi

finish
