#!/bin/bash
# Issue 19: score one checkpoint of run B: from the data folder, `bash REPO/benchmarks/runs/issue19-b/eval.sh
# step-00000166` (by its path in the repository: it finds benchmarks/heldout.py from there). The three
# zero-shot sets (benchmarks/zeroshot.py TRAIN_DATA/X.jsonl --out zs/X --queries 300 --corpus 2000 for
# squad_dev, snli_devtest, stsb_train), the held-out pairs, SciFact test (beir/scifact).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
STEP=$1
A=runs/b/checkpoints/$STEP/adapter
mkdir -p results
for z in squad_dev snli_devtest stsb_train; do
  e5rag eval zs/$z --task "$(cat zs/$z/task.txt)" --max-length 256 --compile --model smollm2-135m --adapter $A \
     --output results/zs-$z-b-$STEP.json
done
python "$REPO/benchmarks/heldout.py" score heldout.jsonl --model smollm2-135m --adapter $A \
   --max-length 128 | tee results/heldout-b-$STEP.txt
e5rag eval beir/scifact --both --max-length 256 --compile --model smollm2-135m --adapter $A \
   --output results/scifact-b-$STEP.json
