#!/usr/bin/env bash
# The CLI end to end on a GPU with a random model of a real shape (no model weights needed):
# save it, `e5rag index` the example corpus into FAISS, `info`, `search` with two tasks, index again
# (every document unchanged). Needs torch, transformers and faiss on the machine.
#   bash scripts/gpu_e2e.sh TOKENIZER_DIR [DEVICE]   # TOKENIZER_DIR: config.json + tokenizer files
set -euo pipefail
TOK=${1:?usage: scripts/gpu_e2e.sh TOKENIZER_DIR [DEVICE]}; DEV=${2:-cuda}
PY=${PYTHON:-python3}
WORK=$(mktemp -d); M=$WORK/model; IDX=$WORK/index
$PY -c "
import sys, torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])" "$TOK" "$M"
$PY -m e5rag index examples/corpus.jsonl --index "$IDX" --model "$M" --device "$DEV"
$PY -m e5rag info --index "$IDX"
Q="Does drinking coffee lower the risk of diabetes?"
$PY -m e5rag search --index "$IDX" --task scifact -k 3 --device "$DEV" "$Q"
$PY -m e5rag search --index "$IDX" --task quora -k 3 --device "$DEV" "$Q"
$PY -m e5rag index examples/corpus.jsonl --index "$IDX" --model "$M" --device "$DEV"  # again: all unchanged
