#!/usr/bin/env bash
# Build the CUDA bundle, smoke-test it, and measure it on this machine's NVIDIA GPU, in one run.
#
#     bash packaging/gpu_check.sh            # prints the bundle check, then bench_gpu.py's JSON
#
# Needs a CUDA toolkit (nvcc) and an NVIDIA driver. The CUDA wheel is built for this machine's
# GPU only (its compute capability, from nvidia-smi) unless POLLAMA_CUDA_ARCHITECTURES is set:
# the default all-architectures build takes far longer than one check should. Wheels are cached
# (packaging/llama_wheel.py), so with them in the cache the run is the freeze, the check and
# the benchmark: a few minutes on 16 cores. Put its result in the README's GPUs section.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvcc >/dev/null || { echo "gpu_check: no nvcc (CUDA toolkit) on PATH" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi (NVIDIA driver)" >&2; exit 2; }
if [ -z "${POLLAMA_CUDA_ARCHITECTURES:-}" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  export POLLAMA_CUDA_ARCHITECTURES="$cap"
fi
echo "gpu_check: CUDA architectures ${POLLAMA_CUDA_ARCHITECTURES}; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
dist="${POLLAMA_GPU_CHECK_DIST:-build/gpu-check}"
time python packaging/build.py --backend cuda --check --dist "$dist/dist" --work "$dist/work"
python benchmarks/bench_gpu.py --exe "$dist/dist/pollama/pollama" --rounds 3
