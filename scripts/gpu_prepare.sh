#!/usr/bin/env bash
# Prepares, here (where pip reaches PyPI), what scripts/gpu_check.sh takes to a GPU host
# that has no network; both folders are ignored by git and travel as carried paths:
#   .whl/       Python 3.12 wheels of what the host's image lacks (it has numpy, CuPy and
#               pytest; no PyTorch CUDA build fits the carry), at the versions installed
#               here, so the GPU runs the code CI tests; the build backend (hatchling, its
#               readme plugin, what they need, and editables for `pip install -e`) for the
#               offline `nox -s cupy` (XPNET_WHEELS=.whl); SHA256SUMS of them all;
#   .gpu-data/  the MNIST files and the book's weights, from DATA (default ../shared/data),
#               with their SHA256SUMS.
# scripts/gpu_check.sh verifies both sums before it uses a byte of either.
# Usage: bash scripts/gpu_prepare.sh [DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
python=${PYTHON:-python3}
packages=(
    array-api-compat array-api-extra array-api-strict platformdirs tqdm threadpoolctl
    requests urllib3 idna charset-normalizer certifi
    hypothesis attrs sortedcontainers
    matplotlib contourpy cycler fonttools kiwisolver packaging pillow pyparsing python-dateutil tzdata
    hatchling hatch-fancy-pypi-readme editables pathspec pluggy tomlkit trove-classifiers
)

pins=$("$python" - "${packages[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
except PackageNotFoundError as missing:
    sys.exit(
        f"gpu_prepare: {missing.name} is not installed here: "
        "pip install -e '.[test]' hatchling hatch-fancy-pypi-readme editables"
    )
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
echo "next, with a GPU lent: run 'bash scripts/gpu_check.sh' with carry ['.whl', '.gpu-data']"
echo "(rehearse here first: XPNET_GPU_CHECK_REHEARSAL=1 with a stand-in nvidia-smi on PATH)"
