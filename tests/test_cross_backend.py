"""A checkpoint saved under this backend loads under the other two with equal predictions.

Covers every builder with each defense layer in its head: plain; hashed head +
SAP + GI3 view; pruned head and convs + defensive dropout + Gaussian noise
(random switching comes with ``hrs_cnn``). Random layers are compared with
their randomness switched off, which is deterministic on every backend.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import hardened
from hardened.layers import apply_gi, set_randomness
from hardened.models import BUILDERS, SINGLE_FC, TEST_CONFIGS, build_model

BACKENDS = ("tensorflow", "jax", "torch")
SPECS = {
    "plain": None,
    "hashed_sap_gi3": {"hashed": [1 / 64, 1 / 8], "stochastic": {"kind": "sap", "ratio": 1.0, "seed": 1}},
    "pruned_dropout_noise": {
        "prune": True,
        "stochastic": {"kind": "dropout", "rate": 0.3, "seed": 2},
        "conv_noise": {"init": 0.1, "inner": 0.05, "seed": 3},
    },
}


def _build(name, spec_name):
    spec = SPECS[spec_name]
    if spec is not None and name in SINGLE_FC:
        spec = {**spec, "extra_fc": 16}
    model = build_model(name, defense=spec, **TEST_CONFIGS[name])
    if spec_name == "hashed_sap_gi3":
        model = apply_gi(model, "gi3", 0.3, seed=5)
    return model


@pytest.fixture(scope="module")
def saved_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("xbackend")
    expected = {}
    for name in sorted(BUILDERS):
        for spec_name in SPECS:
            case = f"{name}--{spec_name}"
            keras.utils.set_random_seed(7)
            model = _build(name, spec_name)
            set_randomness(model, False)
            shape = (2,) + tuple(model.input_shape[1:])
            x = np.random.default_rng(0).random(shape).astype("float32")
            np.save(root / f"{case}.x.npy", x)
            expected[case] = keras.ops.convert_to_numpy(model(x, training=False))
            hardened.save_pretrained(model, root / case)
    return root, expected


def _next_backend(here):
    return BACKENDS[(BACKENDS.index(here) + 1) % len(BACKENDS)]


# The default run loads into the next backend in the cycle tf -> jax -> torch -> tf,
# so CI's three runs cover every backend as saver and as loader; `-m slow` adds
# the remaining directions.
@pytest.mark.parametrize("other", [
    pytest.param(b, marks=[] if b == _next_backend(keras.backend.backend()) else [pytest.mark.slow])
    for b in BACKENDS if b != keras.backend.backend()
])
def test_checkpoints_load_with_equal_predictions_on_other_backend(saved_cases, other):
    here = keras.backend.backend()
    root, expected = saved_cases
    env = {**os.environ, "KERAS_BACKEND": other}
    script = Path(__file__).with_name("_crossload.py")
    proc = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    worst = []
    for case, ref in expected.items():
        got = np.load(root / f"{case}.{other}.npy")
        assert got.shape == ref.shape, case
        diff = float(np.max(np.abs(got - ref)))
        worst.append((diff, case))
        # 1e-5 relative to the logits' scale: backends sum float32 convolutions
        # in different orders (measured worst: 3e-5 on logits of magnitude 24).
        tol = 1e-5 * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol, err_msg=f"{case}: saved on {here}, loaded on {other}")
    print(f"{here} -> {other}: worst |diff| {max(worst)}")
