#!/usr/bin/env bash
# The refresh loop: a better model, and the index follows.
#
#   examples/refresh.sh INDEX BEIR_DIR [RUN_DIR]
#
#   1. mine hard negatives for BEIR_DIR's train split with the model INDEX serves now;
#   2. train a LoRA adapter on them (on the same base model);
#   3. evaluate the current model and the new adapter on BEIR_DIR's test split;
#   4. re-embed INDEX with the new adapter (`e5rag reindex`) only if it is better by more than
#      MIN_GAIN on METRIC; otherwise the index is left as it is.
#
# The current model is what `e5rag info --index INDEX --json` records (the embedded default when the
# record names no source). A rerun reuses RUN_DIR's mined data and trained adapter (delete RUN_DIR to
# start over); the reindex itself resumes where a killed one stopped.
#
# Environment: E5 (the e5rag command; default `python -m e5rag`), METRIC (default ndcg@10), MIN_GAIN
# (default 0), MAX_LENGTH (default 512), TRAIN_ARGS (more `e5rag train` flags, e.g. "--max-steps 200
# --lora-layers 4"), MINE_ARGS (more `e5rag mine` flags).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 INDEX BEIR_DIR [RUN_DIR]" >&2
  exit 2
fi
INDEX=$1
DATA=$2
RUN=${3:-runs/refresh}
PY=${PYTHON:-python}
read -r -a E5 <<< "${E5:-$PY -m e5rag}"
METRIC=${METRIC:-ndcg@10}
MIN_GAIN=${MIN_GAIN:-0}
MAX_LENGTH=${MAX_LENGTH:-512}
read -r -a TRAIN_EXTRA <<< "${TRAIN_ARGS:-}"
read -r -a MINE_EXTRA <<< "${MINE_ARGS:-}"
mkdir -p "$RUN"

# The model the index serves: --model/--adapter flags from its record (none: the embedded default).
"${E5[@]}" info --index "$INDEX" --json > "$RUN/index-info.json"
CURRENT_FLAGS=$("$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))["model"]
flags = [f"--{flag}={m[key]}" for flag, key in (("model", "source"), ("adapter", "adapter_path")) if m.get(key)]
print(" ".join(flags))
' "$RUN/index-info.json")
read -r -a CURRENT <<< "$CURRENT_FLAGS"
BASE=()
for flag in "${CURRENT[@]}"; do [[ $flag == --model=* ]] && BASE=("$flag"); done
echo "== current model: ${CURRENT[*]:-the embedded default}" >&2

if [[ ! -s $RUN/mined.jsonl ]]; then
  echo "== 1. mine hard negatives with the current model" >&2
  "${E5[@]}" mine "$DATA" --split train --out "$RUN/mined.jsonl" --max-length "$MAX_LENGTH" \
    "${CURRENT[@]}" "${MINE_EXTRA[@]}"
fi

if [[ ! -f $RUN/adapter/adapter_config.json ]]; then
  echo "== 2. train a LoRA adapter" >&2
  "${E5[@]}" train --data "$RUN/mined.jsonl" --output "$RUN" --max-length "$MAX_LENGTH" --no-progress \
    "${BASE[@]}" "${TRAIN_EXTRA[@]}" > /dev/null
fi
ADAPTER=$(cd "$RUN/adapter" && pwd)

echo "== 3. evaluate the current model and the new adapter" >&2
"${E5[@]}" eval "$DATA" --split test --max-length "$MAX_LENGTH" "${CURRENT[@]}" --json --out "$RUN/eval-current.json" > /dev/null
"${E5[@]}" eval "$DATA" --split test --max-length "$MAX_LENGTH" "${BASE[@]}" --adapter "$ADAPTER" --json --out "$RUN/eval-new.json" > /dev/null
DECISION=$("$PY" -c '
import json, sys
metric, gain = sys.argv[3], float(sys.argv[4])
old, new = (json.load(open(p))["results"][0]["metrics"][metric] for p in sys.argv[1:3])
verdict = "better" if new > old + gain else "kept"
print(f"{verdict} {metric} {old:.4f} -> {new:.4f}")
' "$RUN/eval-current.json" "$RUN/eval-new.json" "$METRIC" "$MIN_GAIN")
echo "== $DECISION" >&2

if [[ $DECISION == better* ]]; then
  echo "== 4. re-embed $INDEX with the new adapter" >&2
  "${E5[@]}" reindex --index "$INDEX" --max-length "$MAX_LENGTH" "${BASE[@]}" --adapter "$ADAPTER"
else
  echo "== 4. not better by more than $MIN_GAIN: $INDEX keeps its model" >&2
fi
