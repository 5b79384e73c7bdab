#!/usr/bin/env bash
# Choosing the served blend weight on *source* devices only (issue 15 B;
# docs/experiments/table7.md, "The blend weight from held-out sources").
# For every task T of the paper's 12 and every source s of T: pretrain on
# T's other sources, transfer to s with k = 20 samples, and score every
# candidate weight by Spearman over s's whole latency column. No test
# device of any task is read. Summarise with blend_loso_summary.py OUT_DIR.
#
# usage: blend_loso.sh HOST_BIN OUT_DIR [SEED] [TRIALS]    (run from the repository root)
set -euo pipefail
bin=$1 out=$2 seed=${3:-0} trials=${4:-1}
py=${PYTHON:-python3}
mkdir -p "$out"
$py - "$out" <<'PY'
import json, os, sys
tasks = json.load(open("data/tasks.json"))
loso, index = {"nb201": {}, "fbnet": {}}, 200
for space, ts in tasks.items():
    for name, t in ts.items():
        for s in t["train"]:
            loso[space][f"{name}~{s}"] = {"task_index": index, "test": [s],
                                          "train": [x for x in t["train"] if x != s]}
            index += 1
json.dump(loso, open(os.path.join(sys.argv[1], "loso_all.json"), "w"), indent=1)
PY
for space in nb201 fbnet; do
  "$bin" eval --space "$space" --tasks-file "$out/loso_all.json" --task all --trials "$trials" \
    --seed "$seed" --method nasflat --blend 0,0.5,0.7,0.85,0.95,1 --quiet \
    --json "$out/$space.json" > "$out/$space.md" 2> "$out/$space.log" &
done
wait
