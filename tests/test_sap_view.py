"""SAP as a training-free view (`hardened.layers.sap_view`, registry transform ``"sap"``).

What the view really does: with randomness off every SAP layer is the
identity, so the view computes its base exactly; with randomness on, each
call keeps a random, magnitude-weighted subset of fc1's activations, rescaled
to be unbiased, so two calls differ while the clean accuracy stays close to
the base's. The architecture is the ``cwcnn-sap-*`` recipes' (one SAP layer
``fc1_sap`` between FC1 and FC2).
"""

import warnings

import keras
import numpy as np
import pytest

from hardened.layers import StochasticActivationPruning, randomized_layers, sap_view, set_randomness
from hardened.models import cwcnn
from hardened.zoo import registry as reg
from hardened.zoo.hub import apply_view


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    model = cwcnn((28, 28, 1), widths=(4, 4, 8, 8, 32, 16))
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    return model, x


def test_view_has_the_sap_recipe_architecture_and_shares_the_weights(small):
    model, _ = small
    view = sap_view(model)
    recipe = cwcnn((28, 28, 1), widths=(4, 4, 8, 8, 32, 16),
                    defense={"stochastic": {"kind": "sap", "ratio": 1.0, "seed": 0}})
    assert [layer.name for layer in view.layers] == [layer.name for layer in recipe.layers]
    assert view.get_layer("fc1_sap").get_config() == recipe.get_layer("fc1_sap").get_config()
    assert view.name == model.name + "_sap" and "fc1_sap" not in [layer.name for layer in model.layers]
    # The base's layer objects themselves (only the input is new): same variables, nothing copied.
    for layer in model.layers[1:]:
        assert view.get_layer(layer.name) is layer
    assert len(view.weights) == len(model.weights)
    assert [layer.name for layer in randomized_layers(view)] == ["fc1_sap"]


def test_randomness_off_is_the_base_and_on_differs_per_call(small):
    model, x = small
    view = sap_view(model, ratio=1.0, seed=0)
    base = _numpy(model(x))
    first, second = _numpy(view(x)), _numpy(view(x))
    assert not np.allclose(first, second), "SAP with randomness on must draw anew on every call"
    assert not np.allclose(first, base)
    assert set_randomness(view, False) == 1
    np.testing.assert_array_equal(_numpy(view(x)), base)
    set_randomness(view, True)


def test_sap_view_places_layers_by_name_and_checks_its_arguments(small):
    model, x = small
    view = sap_view(model, ratio=0.5, seed=3, layers=["conv4", "fc2"])
    names = [layer.name for layer in view.layers]
    assert names.index("conv4_sap") == names.index("conv4") + 1 and names.index("fc2_sap") == names.index("fc2") + 1
    assert view.get_layer("conv4_sap").seed == 3 and view.get_layer("fc2_sap").seed == 4
    assert view.get_layer("fc2_sap").ratio == 0.5
    assert view(x).shape == (len(x), 10)
    with pytest.raises(ValueError, match="no top-level layer"):
        sap_view(model, layers="fc9")
    with pytest.raises(ValueError, match="ratio"):
        sap_view(model, ratio=0)
    with pytest.raises(ValueError, match="already has SAP"):
        sap_view(sap_view(model))


def test_registry_view_transform_sap(small):
    model, x = small
    view = apply_view(model, {"transform": "sap", "eps": 1.0, "seed": 0})
    assert isinstance(view.get_layer("fc1_sap"), StochasticActivationPruning)
    set_randomness(view, False)
    np.testing.assert_array_equal(_numpy(view(x)), _numpy(model(x)))
    assert "sap" in reg.VIEW_TRANSFORMS
    for name in ("cwcnn-sap-mnist", "cwcnn-sap-cifar10"):
        entry = reg.REGISTRY[name]
        assert entry["view"]["transform"] == "sap" and not reg.is_view(reg.REGISTRY[entry["base"]])
    broken = {k: dict(v) for k, v in reg.REGISTRY.items()}
    broken["cwcnn-sap-mnist"]["view"] = {**broken["cwcnn-sap-mnist"]["view"], "eps": 0.0}
    with pytest.raises(ValueError, match="sap's eps"):
        reg.validate_registry(broken)


def test_sap_layer_runs_in_a_traced_predict(small):
    # TF's predict traces with an unknown batch size: the layer must take its feature count from the static shape.
    model, x = small
    view = sap_view(model)
    assert view.predict(x, batch_size=4, verbose=0).shape == (len(x), 10)


def _test_images(dataset, n):
    from hardened.data import DATASETS, load_dataset
    from hardened.data.loaders import _find_local

    if _find_local(DATASETS[dataset], None, ["test"])[0] is None:
        pytest.skip(f"no local {dataset} copy (set HARDENED_DATA_DIR)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the JPEG CIFAR-10 copy says it is one
        x, y = load_dataset(dataset, split="test")
    return x[:n], y[:n]


@pytest.mark.parametrize("dataset, max_drop", [("mnist", 0.02), ("cifar10", 0.04)])
def test_released_sap_views_keep_the_base_accuracy(dataset, max_drop, monkeypatch):
    import huggingface_hub.constants as hf_constants

    import hardened

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    x, y = _test_images(dataset, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hardened.zoo.hub.HubFallbackWarning)
        base = hardened.from_pretrained(f"cwcnn-{dataset}")
        view = hardened.from_pretrained(f"cwcnn-sap-{dataset}")
    assert view.hardened_metadata["view"]["transform"] == "sap" and view.hardened_metadata["base"] == f"cwcnn-{dataset}"
    base_acc = float(np.mean(np.argmax(base.predict(x, verbose=0), -1) == y))
    first, second = view.predict(x, verbose=0), view.predict(x, verbose=0)
    assert not np.allclose(first, second)
    for logits in (first, second):
        # Measured (500 images, TF): MNIST 99.4 % base, 99.2-99.4 % SAP; CIFAR-10 83.8 %, 82.0-82.6 %.
        assert float(np.mean(np.argmax(logits, -1) == y)) >= base_acc - max_drop
    set_randomness(view, False)
    view.make_predict_function(force=True)
    np.testing.assert_array_equal(view.predict(x, verbose=0), base.predict(x, verbose=0))
