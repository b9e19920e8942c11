"""One contract suite applied to every registered builder (on the backend under test)."""

import keras
import numpy as np
import pytest

import hardened
from hardened.attacks._grad import input_grad
from hardened.layers import RandomSwitch, randomized_layers, set_randomness
from hardened.models import BUILDERS, TEST_CONFIGS, build_model

NAMES = sorted(BUILDERS)


def test_every_builder_has_a_test_config():
    assert sorted(TEST_CONFIGS) == NAMES


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            keras.utils.set_random_seed(3)
            cache[name] = build_model(name, **TEST_CONFIGS[name])
        return cache[name]

    return get


def _x(model, n=2):
    return np.random.default_rng(0).random((n,) + tuple(model.input_shape[1:])).astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_builder_contract(name, models, tmp_path):
    model = models(name)
    assert isinstance(model, keras.Model) and model.inputs is not None  # functional
    num_classes = TEST_CONFIGS[name].get("num_classes", 10)
    assert model.output_shape == (None, num_classes)
    # Stable explicit names: no auto-generated "dense_3" style layer names.
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    # The output layer is "logits" (or, for HRS, a switch over paths ending in "logits").
    assert names[-1] == "logits" or isinstance(model.layers[-1], RandomSwitch)

    set_randomness(model, False)
    x = _x(model)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, num_classes) and np.all(np.isfinite(y))

    hardened.save_pretrained(model, tmp_path / name)
    loaded = hardened.load_pretrained(tmp_path / name)
    set_randomness(loaded, False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), y, rtol=1e-5, atol=1e-5)

    if not randomized_layers(model):
        grad = input_grad(model, x, lambda z: keras.ops.max(z, axis=-1))
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
