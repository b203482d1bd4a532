#!/bin/bash
# Issue 19: score one checkpoint of run A (e.g. `eval.sh step-00000203`) in the data folder: the two
# zero-shot sets (benchmarks/zeroshot.py ... --out zs/NAME), the held-out pairs, SciFact test (beir/scifact).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
STEP=$1
A=runs/a/checkpoints/$STEP/adapter
mkdir -p results
for z in medquad squad_dev; do
  e5rag eval zs/$z --task "$(cat zs/$z/task.txt)" --max-length 256 --compile --model smollm2-135m --adapter $A \
     --output results/zs-$z-a-$STEP.json
done
python "$REPO/benchmarks/heldout.py" score heldout.jsonl --model smollm2-135m --adapter $A \
   --max-length 128 | tee results/heldout-a-$STEP.txt
e5rag eval beir/scifact --both --max-length 256 --compile --model smollm2-135m --adapter $A \
   --output results/scifact-a-$STEP.json
