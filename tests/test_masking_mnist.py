"""Issue acceptance check on real data: a GI2 view masks gradients, and the report says so.

A small MLP is trained in the test on an MNIST subset (the offline copy in
../shared/data, skipped when absent). Measured while planning, MNIST, eps 0.2,
20 steps: plain 96 % CE-PGD / 95 % margin-PGD; GI2 view 3 % / 95 %. With
this MLP: plain 100 % / 100 %, GI2 view 7-11 % / 100 % (FGSM 0.5-2 %).
"""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from hardened.attacks import get_attack
from hardened.evaluation import masking
from hardened.evaluation.metrics import untargeted_success
from hardened.layers import apply_gi

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    if not (SHARED / "make_keras_cache.py").is_file():
        pytest.skip("offline MNIST copy (../shared/data) not present")
    from hardened.data import load_dataset

    root = tmp_path_factory.mktemp("mnist")
    subprocess.run([sys.executable, str(SHARED / "make_keras_cache.py"), str(root), "--only", "mnist"],
                   check=True, capture_output=True)
    (x, y), (xt, yt) = load_dataset("mnist", data_dir=root)
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Flatten(name="flatten")(inp)
    h = keras.layers.Dense(128, activation="relu", name="fc1")(h)
    h = keras.layers.Dense(64, activation="relu", name="fc2")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h), name="mnist_mlp")
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=128, verbose=0)
    return model, xt[:200], yt[:200]


def _success(model, attack, x, y):
    pred = np.argmax(keras.ops.convert_to_numpy(model.predict(x, verbose=0)), -1)
    adv = attack.generate(model, x, y)
    pred_adv = np.argmax(keras.ops.convert_to_numpy(model.predict(adv, verbose=0)), -1)
    return untargeted_success(y, pred, pred_adv)[0]


def test_gi2_masks_ce_attacks_but_not_margin_attacks_and_is_flagged(mnist_model):
    model, x, y = mnist_model
    acc = float(np.mean(np.argmax(keras.ops.convert_to_numpy(model.predict(x, verbose=0)), -1) == y))
    assert acc > 0.9
    gi2 = apply_gi(model, "gi2", 3.0)
    fgsm = get_attack("fgsm", eps=0.2)
    pgd_ce = get_attack("pgd", eps=0.2, steps=20, loss="ce", seed=0)
    pgd_margin = get_attack("pgd", eps=0.2, steps=20, loss="margin", seed=0)

    rates = {}
    plain_margin = _success(model, pgd_margin, x, y)
    gi2_margin = _success(gi2, pgd_margin, x, y)
    rates.update(gi2_fgsm=_success(gi2, fgsm, x, y), gi2_ce=_success(gi2, pgd_ce, x, y),
                 plain_ce=_success(model, pgd_ce, x, y), plain_margin=plain_margin, gi2_margin=gi2_margin)
    print(rates)
    # Measured on this MLP (3 backends): FGSM 0.5-2 %, CE-PGD 7-11 % (PGD keeps
    # any iterate that escapes saturation, so it beats FGSM here).
    assert rates["gi2_fgsm"] <= 0.05 and rates["gi2_ce"] <= 0.15, rates
    assert rates["plain_ce"] >= 0.90, rates
    assert gi2_margin >= 0.90
    assert abs(gi2_margin - plain_margin) <= 0.02

    eps = [0.05, 0.1, 0.2, 1.0]
    flags_plain = masking.run_masking_checks(model, x, y, eps, subset=100)["flags"]
    flags_gi2 = masking.run_masking_checks(gi2, x, y, eps, subset=100)["flags"]
    assert not masking.gradient_masking(flags_plain), [f["name"] for f in flags_plain if f["triggered"]]
    assert masking.gradient_masking(flags_gi2)
    triggered = {f["name"] for f in flags_gi2 if f["triggered"]}
    assert {"zero_gradients", "ce_margin_gap"} <= triggered


# The acceptance numbers on a small CNN (the planning measurement used
# a CNN): fast with TensorFlow, so it runs by default there and under -m slow
# on the other backends. Measured (TF): plain 95 % CE-PGD / 93 % margin-PGD,
# GI2 view 3 % / 93 %, FGSM 2.5 %.
@pytest.mark.skipif(not (SHARED / "make_keras_cache.py").is_file(), reason="offline MNIST copy not present")
@pytest.mark.parametrize("backend", [pytest.param(
    "current", marks=[] if keras.backend.backend() == "tensorflow" else [pytest.mark.slow])])
def test_gi2_on_small_cnn_near_zero_ce_success_and_unchanged_margin_success(backend, tmp_path):
    from hardened.data import load_dataset
    from hardened.models import build_model

    subprocess.run([sys.executable, str(SHARED / "make_keras_cache.py"), str(tmp_path), "--only", "mnist"],
                   check=True, capture_output=True)
    (x, y), (xt, yt) = load_dataset("mnist", data_dir=tmp_path)
    keras.utils.set_random_seed(0)
    model = build_model("cwcnn", input_shape=(28, 28, 1), widths=(16, 16, 32, 32, 64, 64))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:30000], y[:30000], epochs=2, batch_size=128, verbose=0)
    xs, ys = xt[:200], yt[:200]
    gi2 = apply_gi(model, "gi2", 3.0)
    pgd_ce = get_attack("pgd", eps=0.2, steps=20, loss="ce", seed=0)
    pgd_margin = get_attack("pgd", eps=0.2, steps=20, loss="margin", seed=0)
    rates = {
        "gi2_fgsm": _success(gi2, get_attack("fgsm", eps=0.2), xs, ys),
        "gi2_ce": _success(gi2, pgd_ce, xs, ys),
        "plain_ce": _success(model, pgd_ce, xs, ys),
        "gi2_margin": _success(gi2, pgd_margin, xs, ys),
        "plain_margin": _success(model, pgd_margin, xs, ys),
    }
    print(rates)
    # The net is trained here, so its numbers follow the CPU's float kernels: <= 5 % on an AMX CPU,
    # 4.0 % (FGSM) / 6.0 % (PGD-CE) on an AVX2-only AMD EPYC. Masking is the gap to >= 90 % below.
    assert rates["gi2_fgsm"] <= 0.10 and rates["gi2_ce"] <= 0.10, rates
    assert rates["plain_ce"] >= 0.90, rates
    assert rates["gi2_margin"] >= 0.90 and abs(rates["gi2_margin"] - rates["plain_margin"]) <= 0.02, rates
