#!/usr/bin/env bash
# Issues 16, 17, 18, 19: the adaptive suite (PGD-CE/margin/DLR, BPDA, EOT and fixed-randomness PGD for randomized
# models, Square, AutoAttack standard or rand) at n 500 on every released folder that has no
# results_adaptive.json yet. Resumable: a finished folder is skipped; the one in progress resumes from
# work/eval-all/NAME/results.partial.json (--resume). Each finished model is copied into its card folder,
# the card and the leaderboard re-rendered and committed; commit work/eval-all/NAME/results.partial.json by
# hand before a session ends. The queue is recomputed after every model, so folders released while it runs
# join it. Order: the robust references first (issue 17), then dataset by dataset (cheapest first): cards
# whose PGD rows predate APGD (8704c59) rerun those rows (--reuse), then deterministic, then randomized folders.
# A model whose evaluation fails is not retried in the same run.
# Usage (repo root, venv active, dataset cache in HARDENED_DATA_DIR):
#   HF_HUB_OFFLINE=1 KERAS_BACKEND=tensorflow nice -n 19 bash work/eval-all/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
failed=" "
release() {  # NAME OUT MESSAGE: copy OUT's results into the card, re-render, commit
  cp "$2/results.json" "model_cards/$1/results_adaptive.json"
  rm -rf "$2"
  # Every card (a defended card quotes its undefended sibling's results) and the leaderboard read the new
  # results: re-render all of them in the same commit (tests/test_cards and test_leaderboard check them).
  hardened cards >/dev/null
  hardened leaderboard --write >/dev/null
  git add -A model_cards "work/eval-all" && git commit -q -m "$3" -- model_cards "work/eval-all" || true
}
queue() {  # "NAME eval" (no adaptive results yet) or "NAME BACKEND" (refresh fixed-step PGD rows), in order
  python - <<'PY'
import json, os
from hardened.zoo.registry import REGISTRY
random_defenses = {"hrs", "dropout", "noise", "sap"}
data_cost = {"mnist": 0, "fashion_mnist": 1, "cifar10": 2}
items = []
for name in REGISTRY:
    path = f"model_cards/{name}/results_adaptive.json"
    if not os.path.isdir(f"model_cards/{name}"):
        continue
    e = REGISTRY[name]
    if not os.path.exists(path):
        kind, what = (2 if e["defense"] in random_defenses else 1), "eval"
    else:
        results = json.load(open(path))
        if not any(r["name"] == "PGD-CE" and r.get("attack") == "pgd" for r in results["attacks"]):
            continue
        kind, what = 0, results["backend"]
    # Dataset by dataset, so that one dataset's DES (issue 17) has all its members early: the MNIST robust
    # reference, then per dataset the PGD-row refreshes (cheap), deterministic, then randomized folders.
    # The two robust references (issue 17's targets) before everything else.
    items.append(((name not in ("cwcnn-advtrain-mnist", "fastcnn-advtrain-cifar10"), data_cost[e["dataset"]], kind,
                   name), f"{name} {what}"))
for _, line in sorted(items):
    print(line)
PY
}
while true; do
  name=""
  while read -r candidate what; do
    case "$failed" in *" $candidate "*) continue ;; esac
    name=$candidate; break
  done < <(queue)
  [ -z "$name" ] && break
  out=work/eval-all/$name
  if [ "$what" = eval ]; then
    echo "=== $name $(date -u +%FT%T)"
    if hardened evaluate "$name" --suite adaptive --n 500 --out "$out" --resume --no-progress < /dev/null; then
      release "$name" "$out" "$name: adaptive suite with AutoAttack (n 500, TF) from work/eval-all"
    else
      failed="$failed$name "
    fi
  else
    # Cards evaluated before the suite's PGD took APGD's schedule (8704c59) keep fixed-step PGD rows: rerun only
    # those (and rows added since) on the card's own backend, reusing every other row (hardened evaluate --reuse).
    card=model_cards/$name
    out=work/eval-all/refresh-$name
    echo "=== refresh $name ($what) $(date -u +%FT%T)"
    if KERAS_BACKEND=$what hardened evaluate "$name" --suite adaptive --n 500 --out "$out" --resume --no-progress \
        --reuse "$card/results_adaptive.json" < /dev/null; then
      release "$name" "$out" \
        "$name: PGD rows rerun with the suite's APGD schedule, other rows reused (n 500, $what) from work/eval-all"
    else
      failed="$failed$name "
    fi
  fi
done
