"""One contract suite applied to every registered hardened layer (on the backend under test)."""

import keras
import numpy as np
import pytest

import hardened
from hardened.attacks._grad import input_grad
from hardened.layers import set_randomness
from hardened.testing import LAYER_EXAMPLES, registered_layer_names

NAMES = sorted(LAYER_EXAMPLES)


def _model(name):
    factory, shape = LAYER_EXAMPLES[name]
    inp = keras.Input(shape, name="x")
    model = keras.Model(inp, factory()(inp), name=f"contract_{name.lower()}")
    return model, shape


def _batch(shape, n=2):
    return np.random.default_rng(0).random((n,) + tuple(shape)).astype("float32")


def test_every_registered_layer_has_an_example():
    missing = sorted(set(registered_layer_names()) - set(LAYER_EXAMPLES))
    assert not missing, f"registered layers without a contract example: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_finite_with_right_shape(name):
    model, shape = _model(name)
    x = _batch(shape)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape[0] == 2 and tuple(y.shape[1:]) == tuple(model.output_shape[1:])
    assert np.all(np.isfinite(y))
    assert np.abs(y).max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_config_holds_constructor_arguments_only(name):
    factory, shape = LAYER_EXAMPLES[name]
    layer = factory()
    layer.build((None,) + tuple(shape))
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Derived state (hash tables, GI noise) is not in the config.
    flat = repr(config)
    assert "_index" not in flat and "_noise" not in flat


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_gives_equal_outputs(name, tmp_path):
    model, shape = _model(name)
    x = _batch(shape)
    set_randomness(model, False)
    expected = keras.ops.convert_to_numpy(model(x))
    hardened.save_pretrained(model, tmp_path / "ckpt")
    loaded = hardened.load_pretrained(tmp_path / "ckpt")
    set_randomness(loaded, False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_input_gradient_is_finite_and_not_all_zero(name):
    model, shape = _model(name)
    set_randomness(model, False)  # deterministic view of randomized layers
    x = _batch(shape)
    grad = input_grad(model, x, lambda logits: keras.ops.sum(logits ** 2, axis=tuple(range(1, len(logits.shape)))))
    assert grad.shape == x.shape
    assert np.all(np.isfinite(grad))
    if getattr(type(LAYER_EXAMPLES[name][0]()), "masks_gradient", False):
        assert np.abs(grad).max() == 0  # by design (rounding): what BPDA exists for
    else:
        assert np.abs(grad).max() > 0


@pytest.mark.parametrize("name", [n for n in NAMES if getattr(
    type(LAYER_EXAMPLES[n][0]()), "is_randomized", False) and n != "GIView"])
def test_randomized_layers_are_random_and_switchable(name):
    model, shape = _model(name)
    x = _batch(shape, n=1)
    outs = [keras.ops.convert_to_numpy(model(x)) for _ in range(8)]
    assert any(not np.allclose(outs[0], o) for o in outs[1:]), "randomized layer gave 8 equal outputs"
    assert set_randomness(model, False) == 1
    a, b = (keras.ops.convert_to_numpy(model(x)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
