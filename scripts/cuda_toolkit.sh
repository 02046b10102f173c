#!/usr/bin/env bash
# A minimal CUDA 13.0 toolkit assembled from NVIDIA's PyPI wheels, ONLY for building
# `engine --features cuda` on a machine that has no CUDA toolkit (and no GPU), e.g. to build a
# binary here and run it on a GPU machine that has no Rust toolchain. Where a real toolkit is
# installed (/usr/local/cuda), use that instead.
#
# It downloads nvcc, cicc (nvvm), the crt/runtime/cccl headers, cudart, nvrtc, cublas and curand
# (pip download, no install; ~650 MB) into .cache/cuda/wheels and unzips them into one CUDA_HOME
# layout, .cache/cuda/toolkit (a libcuda.so link stub is generated, see below):
#   bin/nvcc ptxas fatbinary ...   nvvm/bin/cicc   nvvm/libdevice/
#   include/ (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, crt/, cccl/)   lib/ (libcudart.so ...)
#   lib64 -> lib, targets/x86_64-linux/{include,lib} -> ../../{include,lib} (nvcc.profile looks there)
# Then it prints the environment for the build. Usage:
#
#   scripts/cuda_toolkit.sh                  # fetch (once) and assemble; prints the exports
#   eval "$(scripts/cuda_toolkit.sh --env)"  # assemble and export them into this shell
#   CARGO_TARGET_DIR=target/cuda cargo build --release -p engine --features cuda
#
# CUDA_COMPUTE_CAP (default 90, the H100/H200) picks the GPU the kernels are compiled for; the
# build never queries a GPU. Versions are CUDA 13.0 (driver >= 580); override with CUDA_WHEELS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/cuda"
wheels="$cache/wheels"
toolkit="$cache/toolkit"
compute_cap="${CUDA_COMPUTE_CAP:-90}"
pip="${PIP:-pip}"
read -r -a specs <<<"${CUDA_WHEELS:-nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.0.19 \
nvidia-curand==10.4.0.35}"

env_only=false
[[ "${1:-}" == "--env" ]] && env_only=true
log() { if $env_only; then echo "$*" >&2; else echo "$*"; fi; }

mkdir -p "$wheels"
for spec in "${specs[@]}"; do
    name="${spec%%==*}"
    version="${spec##*==}"
    pattern="${name//-/_}-${version}-*.whl"
    if ! compgen -G "$wheels/$pattern" >/dev/null; then
        log "cuda_toolkit.sh: downloading $spec"
        "$pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" "$spec" >&2
    fi
done

if [[ ! -x "$toolkit/bin/nvcc" || "$(cat "$toolkit/.specs" 2>/dev/null)" != "${specs[*]}" ]]; then
    log "cuda_toolkit.sh: assembling $toolkit"
    rm -rf "$toolkit" "$cache/unpack"
    mkdir -p "$cache/unpack"
    for spec in "${specs[@]}"; do
        name="${spec%%==*}"
        version="${spec##*==}"
        for whl in "$wheels/${name//-/_}-${version}-"*.whl; do
            python3 -m zipfile -e "$whl" "$cache/unpack" >&2
        done
    done
    # Every CUDA 13 wheel puts its files under nvidia/cu13/ (as PyTorch's site-packages has them).
    mv "$cache/unpack/nvidia/cu13" "$toolkit"
    rm -rf "$cache/unpack"
    chmod +x "$toolkit"/bin/* "$toolkit"/nvvm/bin/*
    # Linker names the wheels leave out (`-lcudart` needs libcudart.so).
    for lib in "$toolkit"/lib/lib*.so.*; do
        base="$(basename "$lib")"
        [[ "$base" == *.alt.* || "$base" == *builtins* ]] && continue
        ln -sf "$base" "$toolkit/lib/${base%%.so.*}.so"
    done
    # candle links cudarc with `dynamic-linking` (-lcuda -lcublas -lcublasLt -lcurand -lnvrtc, and
    # -lcudart for candle-kernels), so the linker needs a libcuda.so. The driver's libcuda.so.1 comes
    # with the NVIDIA driver, not with any wheel: build a stub (as a toolkit's lib/stubs has) that
    # exports every driver-API name of cuda.h (and of cudarc's bindings, when found) under the
    # soname libcuda.so.1. It is never loaded; at run time the driver's libcuda.so.1 is.
    mkdir -p "$toolkit/lib/stubs"
    {
        gcc -E -P -D__CUDA_API_VERSION_INTERNAL "$toolkit/include/cuda.h" | tr -s ' \n' ' ' \
            | grep -oE 'CUresult cu[A-Za-z0-9_]+ ?\(' | sed -E 's/^CUresult (cu[A-Za-z0-9_]+).*/\1/'
        for bindings in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/mod.rs; do
            [[ -f "$bindings" ]] && grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^pub unsafe fn //'
        done
    } | sort -u | sed -E 's/.*/int &(void) { return 999; }/' >"$toolkit/lib/stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$toolkit/lib/stubs/libcuda.so" "$toolkit/lib/stubs/cuda_stub.c"
    ln -sfn lib "$toolkit/lib64"
    mkdir -p "$toolkit/targets/x86_64-linux"
    ln -sfn ../../include "$toolkit/targets/x86_64-linux/include"
    ln -sfn ../../lib "$toolkit/targets/x86_64-linux/lib"
    echo "${specs[*]}" >"$toolkit/.specs"
fi

exports="export CUDA_HOME=$toolkit CUDA_PATH=$toolkit CUDA_ROOT=$toolkit CUDA_TOOLKIT_ROOT_DIR=$toolkit
export NVCC=$toolkit/bin/nvcc CUDA_COMPUTE_CAP=$compute_cap
export PATH=$toolkit/bin:\$PATH
export LIBRARY_PATH=$toolkit/lib:$toolkit/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
if $env_only; then
    echo "$exports"
else
    "$toolkit/bin/nvcc" --version | tail -2
    echo "# build environment (or: eval \"\$(scripts/cuda_toolkit.sh --env)\"):"
    echo "$exports"
fi
