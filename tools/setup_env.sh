#!/usr/bin/env bash
# Set up .venv at the repository root with the exact pinned stack. Safe to re-run.
#   bash tools/setup_env.sh            # everything (Python stack + Chromium for the browser tests)
#   SKIP_APT=1 bash tools/setup_env.sh # no Debian packages (browser tests are then skipped)
# The slow parts overlap: mmcv's C++ build (most of a cold set-up) runs in the background while the
# pinned packages download and install and, as root, apt installs Chromium. Every step prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
PIP="$VENV/bin/python -m pip"
LOCK=requirements/lock.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
STEP_START=$START

step() {
  local now
  now=$(date +%s)
  if [ "$now" != "$START" ]; then printf '    (%d s)\n' $(( now - STEP_START )); fi
  STEP_START=$now
  printf '\n==> %s\n' "$*"
}

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

step "build tools (setuptools 80.9 keeps pkg_resources for mmcv's setup.py)"
$PIP install -q -c "$LOCK" "setuptools==80.9.0" "wheel==0.48.0" "ninja==1.13.2" "psutil==7.2.2"

step "torch 2.13.0 (registry build; the local +cpu wheel breaks torchvision) + torchvision 0.28.0, at the lock's pins"
$PIP install -q -c "$LOCK" "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0" "mmengine==0.10.7"

APT_PID=""
if [ -z "${SKIP_APT:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "Debian chromium for the browser tests (in the background; log in $WORK/apt.log)"
    ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ) >"$WORK/apt.log" 2>&1 &
    APT_PID=$!
  else
    echo "note: chromium is not installed (needs root + apt); the browser tests will be skipped"
  fi
fi

BUILD_PID=""
if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  step "mmcv 2.1.0 wheel from source with CPU ops, in the background (about 7 minutes cold; pip caches the wheel)"
  # `pip wheel` only reads the venv (torch's headers), so the installs below can run meanwhile.
  ( MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 CUDA_VISIBLE_DEVICES="" \
      $PIP wheel -q --no-deps --no-build-isolation --no-binary mmcv "mmcv==2.1.0" -w "$WORK/wheels" ) \
    >"$WORK/mmcv.log" 2>&1 &
  BUILD_PID=$!
fi

step "pinned packages ($LOCK, mmcv aside)"
grep -v '^mmcv==' "$LOCK" > "$WORK/lock-without-mmcv.txt"
$PIP install -q -r "$WORK/lock-without-mmcv.txt"
# groundingdino-py pins supervision==0.6.0 in its metadata; it works with the locked one.
$PIP install -q --no-deps "groundingdino-py==0.4.0"

step "repvit_plugins (editable)"
$PIP install -q --no-deps --no-build-isolation -e .

if [ -n "$BUILD_PID" ]; then
  step "waiting for the mmcv build"
  if ! wait "$BUILD_PID"; then
    cat "$WORK/mmcv.log"
    echo "error: the mmcv 2.1.0 build failed (log above); it needs gcc/g++ and the Python headers" >&2
    exit 1
  fi
  $PIP install -q --no-deps "$WORK"/wheels/mmcv-2.1.0-*.whl
fi

if [ -n "$APT_PID" ]; then
  step "waiting for apt (chromium)"
  wait "$APT_PID" || { tail -5 "$WORK/apt.log"; echo "warning: could not install chromium; the browser tests will be skipped"; }
fi

step "checking the installed stack"
"$VENV/bin/python" -c "import mmcv._ext, mmdet, mmseg, torchvision.ops, transformers, segment_anything" \
  || { echo "error: the installed stack does not import (see above)" >&2; exit 1; }
step "done in $(( $(date +%s) - START )) s: $($VENV/bin/python -c 'import torch, repvit_plugins; print("torch", torch.__version__, "| repvit_plugins", repvit_plugins.__version__)')"
