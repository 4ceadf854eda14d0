#!/usr/bin/env bash
# Issue 12's CUDA checks in one call on a GPU machine, at most 9 minutes: the gpu-marked
# training tests, then benchmarks/train_throughput.py on CUDA (batch 64 and 512, cgan and
# wacgan-gp, eager reference vs the loop vs the loop compiled). Output lands in $OUT.
#
# The GPU machine reaches no package registry, and its python3 (torch, onnx, onnxruntime,
# pytest, numpy, pillow, httpx) lacks pydantic. So, here, once:
#     benchmarks/gpu_check.sh --fetch-wheels      # -> benchmarks/out/wheels (git-ignored)
# then there, in one device call from the repository root, carrying benchmarks/out/wheels:
#     bash benchmarks/gpu_check.sh                # OUT=... is set by the device tool
# Afterwards: copy the figures of $OUT/train_throughput.txt into benchmarks/results/training.md.
set -u
cd "$(dirname "$0")/.."
WHEELS=benchmarks/out/wheels

if [ "${1:-}" = "--fetch-wheels" ]; then
    # the versions this repository's .venv resolved; cp312: the GPU image's Python
    mkdir -p "$WHEELS"
    exec .venv/bin/python -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" \
        pydantic==2.14.4 pydantic_core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0
fi

OUT=${OUT:-benchmarks/out/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# one Inductor cache: the benchmark's batch-64 graphs are the tests' graphs
export TORCHINDUCTOR_CACHE_DIR=/tmp/ganaug-inductor
if ! "$PY" -c "import pydantic" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

# the gpu tests: each method trains and exports on CUDA, bf16 with an fp32 penalty, no sync
timeout 240 "$PY" -m pytest -p no:cacheprovider -m gpu -q -rs tests/training/test_cuda.py \
    2>&1 | tee "$OUT/gpu_tests.txt"
echo "gpu tests exit: ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_tests.txt"

timeout 300 "$PY" -m benchmarks.train_throughput --device cuda --rounds 5 \
    2>&1 | tee "$OUT/train_throughput.txt"
echo "benchmark exit: ${PIPESTATUS[0]}" | tee -a "$OUT/train_throughput.txt"
