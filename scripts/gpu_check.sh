#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and no network (about 5 minutes):
#   1. the test suite with the CuPy backend selected (pytest --backend cupy),
#   2. the benchmark with CuPy and PyTorch CUDA beside NumPy; its table prints last.
# Where no GPU is present it says so and exits 0 having checked nothing.
#
# What the GPU host lacks travels with the working tree (both ignored by git; made here,
# where pip reaches PyPI, by scripts/gpu_prepare.sh):
#   .whl/      wheels for Python 3.12 (array-api-compat, array-api-extra, array-api-strict,
#              pooch, platformdirs), installed to /tmp/site;
#   .gpu-data/ the MNIST files and book/sample_weight.pkl (else XPNET_DATA_DIR and
#              XPNET_BOOK_WEIGHTS, else ../shared/data beside the checkout).
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none): nothing checked"
    exit 0
fi
python=${PYTHON:-python3}
if [ -d .whl ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
data=.gpu-data
[ -d "$data" ] || data=../shared/data
export XPNET_DATA_DIR="${XPNET_DATA_DIR:-$data/mnist}"
export XPNET_BOOK_WEIGHTS="${XPNET_BOOK_WEIGHTS:-$data/book/sample_weight.pkl}"
export XPNET_CACHE_DIR="${XPNET_CACHE_DIR:-/tmp/xpnet-cache}"
logs="${OUT:-/tmp}/gpu_check"
mkdir -p "$logs"

echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
echo "== tests, CuPy backend"
timeout 240 "$python" -m pytest --backend cupy -q -p no:cacheprovider tests \
    > "$logs/tests.log" 2>&1
echo "pytest exit status $?: $(tail -1 "$logs/tests.log")"
echo "== benchmark"
timeout 180 "$python" scripts/benchmark.py --weights "$XPNET_BOOK_WEIGHTS" \
    --data-dir "$XPNET_DATA_DIR" --backends numpy cupy --rounds 15 --gpu-rows 1000000 \
    --plot "$logs/bench.png" 2> "$logs/bench.err" | tee "$logs/bench.txt"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || tail -5 "$logs/bench.err"
exit "$status"
