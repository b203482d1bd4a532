#!/bin/bash
# Issue 19, run A: the new default's first leg. From the base (no MedQuAD, no SQuAD: they are the
# zero-shot sets), SciFact train (negatives mined by the shipped default) at weight 2 instead of 8.
# Run inside the data folder made by `benchmarks/heldout.py split TRAIN_DATA --out .` plus the mined
# SciFact file (see README.md); e5rag on PATH. Resumable: the same command with --resume latest.
set -euo pipefail
exec e5rag train --model smollm2-135m \
  --data train_arxiv_title_abstract.jsonl:1 --data train_scitldr.jsonl:1 --data scifact-mined-e5.jsonl:2 \
  --data train_snli_devtest.jsonl:0.3 --data train_stsb_train.jsonl:0.5 \
  --output runs/a --max-length 128 --batch-size 32 --hard-negatives 1 --lr 1e-3 --lora-layers 12 \
  --warmup-steps 20 --max-steps 1200 --save-every 40 --keep-checkpoints 3 --seed 42 "$@"
