#!/usr/bin/env bash
# Set up .venv at the repository root with the exact pinned stack. Safe to re-run.
#   bash tools/setup_env.sh            # everything (Python stack + Chromium for the browser tests)
#   SKIP_APT=1 bash tools/setup_env.sh # no Debian packages (browser tests are then skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

step "build tools (setuptools 80.9 keeps pkg_resources for mmcv's setup.py)"
$PIP install -q "setuptools==80.9.0" "wheel==0.48.0" "ninja==1.13.2" "psutil==7.2.2"

step "torch 2.13.0 (registry build; the local +cpu wheel breaks torchvision) + torchvision 0.28.0"
$PIP install -q "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0" "mmengine==0.10.7"

if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  step "mmcv 2.1.0 from source with CPU ops (about 8 minutes the first time; pip caches the wheel)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 CUDA_VISIBLE_DEVICES="" \
    $PIP install -q --no-build-isolation --no-binary mmcv "mmcv==2.1.0"
fi

step "pinned packages (requirements/lock.txt)"
$PIP install -q -r requirements/lock.txt
# groundingdino-py pins supervision==0.6.0 in its metadata; it works with the locked one.
$PIP install -q --no-deps "groundingdino-py==0.4.0"

step "repvit_plugins (editable)"
$PIP install -q --no-deps --no-build-isolation -e .

if [ -z "${SKIP_APT:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "Debian chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser tests will be skipped"
  else
    echo "note: chromium is not installed (needs root + apt); the browser tests will be skipped"
  fi
fi

step "done: $($VENV/bin/python -c 'import torch, repvit_plugins; print("torch", torch.__version__, "| repvit_plugins", repvit_plugins.__version__)')"
