#!/usr/bin/env bash
# Prepares, here (where pip reaches PyPI), what scripts/gpu_check.sh takes to a GPU host
# that has no network; both folders are ignored by git and travel as carried paths:
#   .whl/       Python 3.12 wheels of what the host's image lacks, at the versions
#               installed here, so the GPU runs the code CI tests. The image (the device
#               tool's KINDS.md) has numpy, CuPy, PyTorch CUDA, JAX with its CUDA plugin,
#               onnx, onnxruntime, onnxscript, scikit-learn, safetensors, matplotlib,
#               hypothesis, pytest, requests, tqdm and dask's own needs (click, cloudpickle,
#               fsspec, pyyaml, toolz); it lacks array-api-compat/-extra/-strict, dask
#               (partd, locket), skl2onnx, skops (prettytable, wcwidth) and platformdirs;
#               it has no nox, so no build backend travels. SHA256SUMS of them all.
#   .gpu-data/  the MNIST test split and the book's weights, from DATA (default
#               ../shared/data), with their SHA256SUMS.
# scripts/gpu_check.sh verifies both sums before it uses a byte of either.
# Usage: PYTHON=/path/to/a/python/with/them bash scripts/gpu_prepare.sh [DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
python=${PYTHON:-python3}
packages=(
    array-api-compat array-api-extra array-api-strict platformdirs
    dask partd locket
    skl2onnx skops prettytable wcwidth
)

pins=$("$python" - "${packages[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
except PackageNotFoundError as missing:
    sys.exit(f"gpu_prepare: {missing.name} is not installed here: pip install -e '.[test]'")
EOF
)
rm -rf .whl
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -d .whl $pins
(cd .whl && sha256sum -- *.whl > SHA256SUMS)

rm -rf .gpu-data
mkdir -p .gpu-data/mnist .gpu-data/book
cp "$data"/mnist/* .gpu-data/mnist/
cp "$data"/book/sample_weight.pkl .gpu-data/book/
(cd .gpu-data && find mnist book -type f -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)
echo "gpu_prepare: $(ls .whl/*.whl | wc -l) wheels ($pins), $(ls .gpu-data/mnist | wc -l) data files;" \
    "$(du -sh --total .whl .gpu-data | tail -1 | cut -f1) to carry"
echo "next, with a GPU lent, in one call with carry ['.whl', '.gpu-data']:"
echo '  XPNET_GPU_RESULTS=$OUT/gpu-check bash scripts/gpu_check.sh'
echo "(rehearse here first: tests/test_gpu_check.py, or see docs/gpu.md)"
