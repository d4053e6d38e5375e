#!/usr/bin/env bash
# Check and time the numba.cuda backend on a real NVIDIA GPU, in one go.
#
#   bash benchmarks/gpu_check.sh [DATA_DIR] [RESULTS_DIR] [BENCHMARK ARGUMENTS...]
#
# 1. prints the GPU and the versions that matter, and times the host's cost
#    of each kind of GPU call against PyTorch's (bench_cuda_overheads.py,
#    RESULTS_DIR/cuda_overheads.json);
# 2. times epochs against the same network in PyTorch on the same GPU
#    (benchmarks/bench_epoch_vs_pytorch.py --device cuda: Last.fm, ML-100K,
#    Yelp2018 and the synthetic 100K-item set, with any further
#    arguments passed on), writing RESULTS_DIR/epoch_vs_pytorch_cuda.json;
# 3. runs the CUDA kernel tests on the GPU (SPARSE_DEEP_REAL_GPU=1: every
#    kernel against the CPU kernels and the slow reference in tests/naive.py,
#    all launched through prepared handles, and those handles' own checks),
#    the log in RESULTS_DIR/gpu_kernel_tests.log.
#
# GPU_CHECK_PARTS picks the parts (default "overheads bench tests"). On an H100 the
# benchmark took about 3 minutes (before Yelp2018 joined it) and the kernel
# tests about 7 in one process (most of it compiling kernels; they now run in
# TEST_WORKERS=8): where one command may run 10 minutes at most, run
# GPU_CHECK_PARTS=bench and GPU_CHECK_PARTS=tests as two commands.
#
# Needs a CUDA build of torch and numba-cuda. Where packages or the data are
# missing and the machine has no internet, benchmarks/gpu_prepare.sh puts
# wheels in .whl/ and the data in .gpu_data/ beforehand.
set -uo pipefail
DATA_DIR=${1:-../shared/data}
RESULTS_DIR=${2:-benchmarks/results}
mkdir -p "$RESULTS_DIR"
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 - <<'EOF'
import importlib.metadata as md
for name in ("numpy", "scipy", "scikit-learn", "numba", "numba-cuda", "llvmlite", "nvmath-python",
             "torch", "netCDF4"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} missing")
from sparse_deep.backends import cuda_device_status, get_backend
status = cuda_device_status()
print("numba.cuda:", status)
if status[0] and not status[1]:
    from sparse_deep.backends.cuda import prepared
    print("dense products:", get_backend("cuda").gemm_report)
    print("launches:", prepared.describe())
EOF

PARTS=" ${GPU_CHECK_PARTS:-overheads bench tests} "

if [[ $PARTS == *" overheads "* ]]; then
    echo "== the host's cost per GPU call"
    timeout 120 python3 benchmarks/bench_cuda_overheads.py --output "$RESULTS_DIR/cuda_overheads.json"
fi

if [[ $PARTS == *" bench "* ]]; then
    echo "== epochs against PyTorch on the GPU"
    timeout ${BENCH_TIMEOUT:-480} python3 benchmarks/bench_epoch_vs_pytorch.py --device cuda --data-dir "$DATA_DIR" \
        --output "$RESULTS_DIR/epoch_vs_pytorch_cuda.json" "${@:3}"
fi

if [[ $PARTS == *" tests "* ]]; then
    echo "== CUDA kernel tests on the GPU"
    # Eight workers compile the kernels in parallel (the machines lent have 16 cores).
    SPARSE_DEEP_REAL_GPU=1 timeout ${TEST_TIMEOUT:-540} python3 -m pytest tests/test_kernels_cuda.py tests/test_prepared_launch.py -v \
        -n ${TEST_WORKERS:-8} -p no:cacheprovider >"$RESULTS_DIR/gpu_kernel_tests.log" 2>&1
    grep -cE " PASSED" "$RESULTS_DIR/gpu_kernel_tests.log" | sed 's/$/ passed/'
    grep -E " (FAILED|ERROR)" "$RESULTS_DIR/gpu_kernel_tests.log" | head -30
    tail -5 "$RESULTS_DIR/gpu_kernel_tests.log"
fi

