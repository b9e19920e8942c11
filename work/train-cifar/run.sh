#!/usr/bin/env bash
# Issue 17's CIFAR-10 trainings and issue 18's airbench-style base (after the robust reference: its 10 epochs
# decide the CIFAR-10 recipe of every later base, VGG-19 included), one after another, each resumable
# in work/<recipe>/ (run again to continue: a finished recipe's checkpoint folder is skipped, the one in
# progress resumes from its last finished epoch; hrs10x10-cifar10 v2 from its last finished channel, kept in
# work/hrs10x10-cifar10/_hrs).
# Usage (repo root, venv active, dataset cache in HARDENED_DATA_DIR):
#   KERAS_BACKEND=tensorflow nice -n 19 bash work/train-cifar/run.sh > /tmp/train-cifar.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
for recipe in fastcnn-advtrain-cifar10 airbench-cifar10 cwcnn-advtrain-cifar10 resnet18-hash-cifar10 \
              cwcnn-dropout0.1-cifar10 cwcnn-dropout0.3-cifar10 cwcnn-noise0.1-cifar10 cwcnn-noise0.2-cifar10 \
              hrs10x10-cifar10; do
  [ -f "work/$recipe/model.safetensors" ] && continue
  echo "=== $recipe $(date -u +%FT%T)"
  base=()
  [ "$recipe" = resnet18-hash-cifar10 ] && base=(--base model_cards/resnet18-cifar10)  # issue 18 item 3
  hardened train "$recipe" --out "work/$recipe" "${base[@]}" --quiet || echo "FAILED $recipe"
done
