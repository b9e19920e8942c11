"""Seed 000's training-free baselines: feature squeezing layers in front of the network, weight quantization."""

import keras
import numpy as np
import pytest
from scipy.ndimage import median_filter

from hardened.evaluation import suites
from hardened.layers import (
    BitDepthReduction,
    MedianSmoothing,
    input_transform_layers,
    input_transform_view,
    quantize_weights,
)
from hardened.models import build_model
from hardened.zoo import registry
from hardened.zoo.entry import ZooEntry


def _np(t):
    return keras.ops.convert_to_numpy(t)


@pytest.mark.parametrize("size", [2, 3])
def test_median_smoothing_is_scipys_median_filter(size):
    x = np.random.default_rng(0).random((2, 7, 6, 3)).astype("float32")
    np.testing.assert_array_equal(_np(MedianSmoothing(size)(x)), median_filter(x, size=(1, size, size, 1),
                                                                                mode="reflect"))


def test_bit_depth_reduction_rounds_to_the_levels_and_is_idempotent():
    x = np.random.default_rng(1).random((3, 5, 5, 1)).astype("float32")
    for bits in (1, 4):
        out = _np(BitDepthReduction(bits)(x))
        assert set(np.round(np.unique(out) * (2**bits - 1), 5)) <= set(range(2**bits))
        np.testing.assert_array_equal(_np(BitDepthReduction(bits)(out)), out)
        assert np.abs(out - x).max() <= 0.5 / (2**bits - 1) + 1e-6
    with pytest.raises(ValueError, match="bits must be an integer"):
        BitDepthReduction(0)


def test_input_transform_view_shares_weights_and_bpda_replaces_the_transform():
    keras.utils.set_random_seed(0)
    base = build_model("cnn7", input_shape=(28, 28, 1))
    view = input_transform_view(base, "median", 2)
    x = np.random.default_rng(2).random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(_np(view(x)), _np(base(MedianSmoothing(2)(x))), rtol=1e-5, atol=1e-5)
    assert input_transform_layers(view) == ["median_smoothing"] and input_transform_layers(base) == []
    assert len(view.weights) == len(base.weights)  # no copy: the base's variables
    specs = suites.build_suite("adaptive", dataset="mnist", backend="tensorflow", bpda_layers=["median_smoothing"])
    bpda = next(s for s in specs if s.name == "BPDA")
    assert bpda.wrapper_params == {"softmax_to_sigmoid": True, "replace": {"median_smoothing": "identity"}}
    converging = next(s for s in specs if s.name == "BPDA-APGD")
    assert converging.attack == "apgd" and converging.wrapper_params == {"replace": {"median_smoothing": "identity"}}
    plain = suites.build_suite("adaptive", dataset="mnist", backend="tensorflow")
    assert "BPDA-APGD" not in {s.name for s in plain} and len(specs) == len(plain) + 1


def test_quantized_weights_take_at_most_two_to_the_bits_values_and_keep_the_base():
    keras.utils.set_random_seed(0)
    base = build_model("cnn7", input_shape=(28, 28, 1))
    before = [_np(w).copy() for w in base.weights]
    q = quantize_weights(base, 3)
    for v, w0 in zip(q.weights, before):
        if v.name == "kernel":
            assert np.unique(_np(v)).size <= 8
            # k-means keeps the kernel close: every weight moved to its nearest shared value.
            assert np.abs(_np(v) - w0).max() < np.ptp(w0) / 4
        else:
            np.testing.assert_array_equal(_np(v), w0)
    for v, w0 in zip(base.weights, before):
        np.testing.assert_array_equal(_np(v), w0)


def test_the_seed000_baseline_views_are_registered_for_both_bases():
    names = [n for n, e in registry.REGISTRY.items() if e["defense"] in ("bitdepth", "median", "quant8", "quant3")]
    assert sorted(names) == sorted(["cnn7-bitdepth1-mnist", "cnn7-median2-mnist", "cnn7-quant8-mnist",
                                    "cnn7-quant3-mnist", "fastcnn-bitdepth4-cifar10", "fastcnn-median2-cifar10",
                                    "fastcnn-quant8-cifar10", "fastcnn-quant3-cifar10"])
    entry = registry.get_entry("bitdepth1-mnist")
    assert entry.view.transform == "bit_depth" and entry.view.eps == 1 and entry.base == "cnn7-mnist"
    bad = {**entry.to_dict(), "view": {"transform": "bit_depth", "eps": 1.5}}
    with pytest.raises(ValueError, match="must be an integer in"):
        ZooEntry.from_dict("x", bad)


def test_seed000_table4_is_quoted_beside_the_input_transform_views():
    from hardened.reporting import leaderboard
    from hardened.reporting.papers import paper_reference

    assert paper_reference("mnist", "bitdepth")["rates"] == {"FGSM": 9.1, "JSMA-Z": 33.51, "C&W": 12.67, "BPDA": 88.2}
    assert paper_reference("cifar10", "median")["rates"]["BPDA"] == 86.1
    assert paper_reference("mnist", "quant8")["rates"] == {"FGSM": 73.51, "JSMA-Z": 90.05, "C&W": 100}
    assert paper_reference("mnist", "quant") is None and paper_reference("cifar10", "quant3") is None
    row = next(r for r in leaderboard.collect() if r["name"] == "cnn7-bitdepth1-mnist")
    assert "ASR BPDA 88.2 % (seed 000)" in str(row)
