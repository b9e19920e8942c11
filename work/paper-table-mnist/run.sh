#!/usr/bin/env bash
# Issue 18 item 6: seed 000's Table II on cnn7-hash-gi3-mnist (v2 weights) at the paper's attack strengths, with
# the sample sizes the issue asks: FGSM / BIM / MIM on 1000 test images, BPDA on up to 1000, JSMA-F / JSMA-Z /
# C&W / EAD / Sub-CW on the first 20 correctly classified images x 9 targets, ZOO untargeted on 20 and targeted
# on 10 x 9, DeepFool rho, substitute FGSM. Resumable per attack (results.partial.json); when it finishes, its
# results.json goes to model_cards/cnn7-hash-gi3-mnist/ (the card's paper-suite file) and this folder is deleted.
# Usage (repo root, venv active, dataset cache in HARDENED_DATA_DIR):
#   HF_HUB_OFFLINE=1 KERAS_BACKEND=tensorflow nice -n 19 bash work/paper-table-mnist/run.sh > /tmp/paper-mnist.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
out=work/paper-table-mnist/run
hardened evaluate cnn7-hash-gi3-mnist --suite hash-gi --n 1000 --out "$out" --resume --no-progress \
  --cap JSMA-F=20 --cap JSMA-Z=20 --cap "C&W=20" --cap EAD=20 --cap Sub-CW=20 \
  --cap ZOO-untargeted=20 --cap ZOO-targeted=10
status=$?
[ $status -ne 0 ] && { echo "evaluation failed ($status): partial results stay in $out"; exit $status; }
# Release: the run's paper-suite files into the card, every card and the leaderboard re-rendered, this folder
# deleted, all in one commit.
card=model_cards/cnn7-hash-gi3-mnist
cp "$out/results.json" "$out/results.md" "$out/success_vs_eps.png" "$card/"
hardened cards >/dev/null && hardened leaderboard --write >/dev/null
git rm -q -r --cached work/paper-table-mnist >/dev/null
rm -rf work/paper-table-mnist
git add -A model_cards && git commit -q -m "cnn7-hash-gi3-mnist: seed 000's full Table II at the paper's strengths (issue 18 item 6; FGSM/BIM/MIM on 1000 test images, JSMA-F/JSMA-Z/C&W/EAD/Sub-CW on 20 images x 9 targets, ZOO 20 and 10 x 9, BPDA, DeepFool) from work/paper-table-mnist, which is deleted" -- model_cards work/paper-table-mnist
