#!/usr/bin/env bash
# The main job on the embedded default: index examples/corpus.jsonl once (no instruction on
# documents), then search the same index with two different task instructions.
set -euo pipefail
cd "$(dirname "$0")/.."
# only what the demo needs (the encoder, PEFT for the shipped adapter, Milvus Lite); a venv that
# already has the dev extras is used as it is
E5RAG_EXTRAS=${E5RAG_EXTRAS:-milvus,peft} bash scripts/setup.sh
E5=.venv/bin/e5rag
INDEX=${E5RAG_DEMO_INDEX:-examples/demo.db}   # Milvus Lite file; a directory path gives FAISS
QUERY="Does drinking coffee lower the risk of diabetes?"
$E5 index examples/corpus.jsonl --index "$INDEX"
echo
echo "== same index, task 1: find evidence for a scientific claim =="
$E5 search --index "$INDEX" --task scifact -k 5 "$QUERY"
echo "== same index, task 2: find questions that ask the same thing =="
$E5 search --index "$INDEX" --task quora -k 5 "$QUERY"
