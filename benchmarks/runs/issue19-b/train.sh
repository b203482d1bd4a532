#!/bin/bash
# Issue 19, run B: from the base; SQuAD, SNLI and STS-B never trained on (the zero-shot sets), MedQuAD kept
# as the question->passage source; negatives of arXiv, SciTLDR and MedQuAD mined with BM25 (`e5rag mine
# train_X.jsonl --model bm25 --window 30-100 --num-negatives 8`), SciFact train's with the shipped default
# (run A's file), SciFact at weight 8 (about 15% of batches).
# Run inside the data folder made by `benchmarks/heldout.py split TRAIN_DATA --out .` plus the mined files
# (see README.md); e5rag on PATH. Resumable across sessions: the same command with --resume latest.
set -euo pipefail
exec e5rag train --model smollm2-135m \
  --data mined/arxiv_title_abstract-bm25.jsonl:1 --data mined/scitldr-bm25.jsonl:1 \
  --data mined/medquad-bm25.jsonl:1 --data scifact-mined-e5.jsonl:8 \
  --output runs/b --max-length 128 --batch-size 32 --hard-negatives 1 --lr 1e-3 --lora-layers 12 \
  --warmup-steps 20 --max-steps 1500 --save-every 40 --keep-checkpoints 3 --seed 42 "$@"
