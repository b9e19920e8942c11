#!/usr/bin/env bash
# Issue 19 / 16: an AutoAttack row (standard, linf, the family's adaptive eps, n 500) for every deterministic
# released card. Resumable: a finished model has model_cards/NAME/results_autoattack.json and is skipped; the
# model in progress resumes from work/autoattack-all/NAME/results.partial.json (--resume). Commit after each model.
# Usage (from the repo root, venv active, MNIST/CIFAR-10 cache in HARDENED_DATA_DIR):
#   HF_HUB_OFFLINE=1 KERAS_BACKEND=tensorflow nice -n 19 bash work/autoattack-all/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
names=$(python - <<'PY'
from hardened.zoo.registry import REGISTRY
import os
random_defenses = {"hrs", "dropout", "noise", "sap"}
for name, e in REGISTRY.items():
    if e.get("defense") in random_defenses or not os.path.isdir(f"model_cards/{name}"):
        continue
    print(name)
PY
)
for name in $names; do
  card=model_cards/$name
  [ -f "$card/results_autoattack.json" ] && continue
  out=work/autoattack-all/$name
  echo "=== $name $(date -u +%H:%M:%S)"
  if hardened evaluate "$name" --suite adaptive --only AutoAttack --n 500 --out "$out" --resume; then
    cp "$out/results.json" "$card/results_autoattack.json"
    rm -rf "$out"
    python -m hardened.zoo.cards "$card" >/dev/null
    git add "$card" && git commit -q -m "$name: AutoAttack (standard, n 500) row from work/autoattack-all" -- "$card" "work/autoattack-all" || true
  fi
done
