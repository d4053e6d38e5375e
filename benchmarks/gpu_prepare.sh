#!/usr/bin/env bash
# Put beside this checkout what a GPU machine without internet needs for
# benchmarks/gpu_check.sh, in folders git ignores:
#
#   .whl/        numpy 2.4.6 (numba-cuda 0.30 cannot compile kernels with numpy
#                2.5, which such machines have) and nvmath-python (cuBLAS), for
#                their Python 3.12; gpu_check.sh installs them
#   .gpu_data/   Last.fm, ML-100K and Yelp2018, copied from DATA_DIR
#
#   bash benchmarks/gpu_prepare.sh [DATA_DIR]      (default ../shared/data)
#
# Then, on the GPU machine, from the checkout's root, with both folders
# carried there: bash benchmarks/gpu_check.sh .gpu_data RESULTS_DIR
set -euo pipefail
DATA_DIR=${1:-../shared/data}
cd "$(dirname "$0")/.."

rm -rf .whl .gpu_data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl "numpy==2.4.6" "nvmath-python==1.0.1"
mkdir -p .gpu_data
for name in lastfm ml-100k yelp2018; do
    cp -r "$DATA_DIR/$name" .gpu_data/
done
du -sh .whl .gpu_data
