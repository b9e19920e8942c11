"""Focused behaviour tests of the defense layers, with numbers."""

import keras
import numpy as np
import pytest

import hardened
from hardened.layers import (
    DefensiveDropout,
    GIView,
    HashedConv2D,
    HashedDense,
    PrunableConv2D,
    PrunableDense,
    RandomSwitch,
    StochasticActivationPruning,
    apply_gi,
    dct_lowpass_targets,
    hash_tables,
    iterative_pruning,
    logits_augmentation,
    prune_by_magnitude,
    remove_gi,
    set_randomness,
    sparsity_report,
)

np_ = keras.ops.convert_to_numpy


# ---------------------------------------------------------------- hashing
def test_hashed_dense_512_at_1_64_holds_4096_weights_and_small_checkpoint(tmp_path):
    def save(layer, name):
        inp = keras.Input((512,), name="x")
        model = keras.Model(inp, layer(inp), name=name)
        hardened.save_pretrained(model, tmp_path / name)
        return (tmp_path / name / "model.safetensors").stat().st_size

    hashed = HashedDense(512, compression=1 / 64, name="h")
    hashed_bytes = save(hashed, "hashed")
    assert hashed.num_weights == 4096
    assert tuple(hashed.kernel.shape) == (4096,)
    assert hashed.count_params() == 4096 + 512
    dense_bytes = save(keras.layers.Dense(512, name="d"), "dense")
    assert hashed_bytes < dense_bytes / 50, (hashed_bytes, dense_bytes)


def test_hash_tables_are_deterministic_uniform_and_seed_dependent():
    idx, sign = hash_tables((256, 256), 1024, seed=3)
    idx2, sign2 = hash_tables((256, 256), 1024, seed=3)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(sign, sign2)
    counts = np.bincount(idx.ravel(), minlength=1024)
    assert counts.min() > 20 and counts.max() < 110  # expected 64 per bucket
    assert abs(sign.mean()) < 0.02 and set(np.unique(sign)) == {-1.0, 1.0}
    # h and xi are independent: sign balance holds inside a bucket too.
    assert abs(sign[idx == 0].mean()) < 0.35
    other, _ = hash_tables((256, 256), 1024, seed=4)
    assert (other != idx).mean() > 0.99


def test_hashed_dense_equals_dense_with_virtual_kernel():
    layer = HashedDense(7, num_weights=5, seed=1, name="h")
    x = np.random.default_rng(0).random((3, 11)).astype("float32")
    y = np_(layer(x))
    idx, sign = hash_tables((11, 7), 5, 1)
    w = np_(layer.kernel)
    expected = x @ (w[idx] * sign) + np_(layer.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_hashed_conv_equals_conv_with_virtual_kernel():
    layer = HashedConv2D(4, 3, padding="same", compression=1 / 4, seed=2, name="hc")
    x = np.random.default_rng(0).random((2, 5, 5, 3)).astype("float32")
    y = np_(layer(x))
    ref = keras.layers.Conv2D(4, 3, padding="same", name="ref")
    ref.build(x.shape)
    ref.set_weights([np_(layer.virtual_kernel()), np_(layer.bias)])
    np.testing.assert_allclose(y, np_(ref(x)), rtol=1e-5, atol=1e-5)
    assert layer.num_weights == round(3 * 3 * 3 * 4 / 4)


@pytest.mark.parametrize("kwargs", [{}, {"compression": 0}, {"compression": 2.0},
                                    {"compression": 0.5, "num_weights": 3}, {"num_weights": 0}])
def test_hashed_dense_rejects_bad_compression(kwargs):
    with pytest.raises(ValueError, match="compression|num_weights"):
        HashedDense(4, **kwargs)


def test_hashed_dense_trains():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    inp = keras.Input((8,))
    model = keras.Model(inp, HashedDense(2, num_weights=8, seed=0, name="h")(inp))
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    hist = model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    assert hist.history["accuracy"][-1] > 0.9


# ---------------------------------------------------------------- GI views
def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="fc1")(inp)
    h = keras.layers.Dense(16, activation="relu", name="fc2")(h)
    out = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(inp, out, name="mlp")


@pytest.mark.parametrize("method", ["gi1", "gi2", "gi3"])
def test_gi_view_matches_transformed_weights_and_leaves_weights_alone(method):
    model = _mlp()
    before = [np_(w).copy() for w in model.weights]
    x = np.random.default_rng(1).random((4, 6)).astype("float32")
    base_out = np_(model(x))
    view = apply_gi(model, method, 0.5, layers=["logits"], seed=3)
    out = np_(view(x))
    # Reference: same network with the transformed kernel written in.
    w = np_(model.get_layer("logits").kernel)
    noise = np.random.default_rng(3).random(w.shape, dtype=np.float32)
    new_w = {"gi1": w + 0.5 * np.sign(w), "gi2": 1.5 * w, "gi3": w + 0.5 * noise * np.sign(w)}[method]
    h = np.maximum(np_(model.get_layer("fc2")(model.get_layer("fc1")(x))), 0)
    np.testing.assert_allclose(out, h @ new_w + np_(model.get_layer("logits").bias), rtol=1e-5, atol=1e-5)
    for w0, w1 in zip(before, model.weights):
        np.testing.assert_array_equal(w0, np_(w1))
    np.testing.assert_array_equal(np_(model(x)), base_out)
    np.testing.assert_allclose(np_(remove_gi(view)(x)), base_out, rtol=1e-6)


def test_gi_default_targets_last_three_kernel_layers():
    view = apply_gi(_mlp(), "gi1", 0.1)
    assert [l.name for l in view.layers if isinstance(l, GIView)] == ["gi_fc1", "gi_fc2", "gi_logits"]


def test_gi2_scales_logits_of_linear_model():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, use_bias=False, name="logits")(inp))
    x = np.random.default_rng(0).random((2, 4)).astype("float32")
    np.testing.assert_allclose(np_(logits_augmentation(model, 4.0)(x)), 4 * np_(model(x)), rtol=1e-5)


def test_gi3_per_call_is_random_and_once_is_not():
    model = _mlp()
    x = np.ones((1, 6), "float32")
    once = apply_gi(model, "gi3", 0.6, seed=1)
    np.testing.assert_array_equal(np_(once(x)), np_(once(x)))
    per_call = apply_gi(model, "gi3", 0.6, resample="per_call", seed=1)
    assert not np.allclose(np_(per_call(x)), np_(per_call(x)))
    set_randomness(per_call, False)
    np.testing.assert_array_equal(np_(per_call(x)), np_(once(x)))


def test_gi_errors():
    with pytest.raises(ValueError, match="Unknown GI method"):
        apply_gi(_mlp(), "gi4", 0.1)
    with pytest.raises(ValueError, match="epsilon"):
        apply_gi(_mlp(), "gi1", -1)
    with pytest.raises(ValueError, match="did you mean"):
        apply_gi(_mlp(), "gi1", 0.1, layers=["logit"])


# ---------------------------------------------------------------- pruning
def test_magnitude_pruning_masks_smallest_remaining_weights():
    inp = keras.Input((8, 8, 1))
    h = PrunableConv2D(4, 3, name="conv")(inp)
    h = keras.layers.Flatten()(h)
    out = PrunableDense(10, name="fc")(h)
    model = keras.Model(inp, out)
    kernel = np_(model.get_layer("fc").kernel).copy()
    density = prune_by_magnitude(model, dense_fraction=0.1, conv_fraction=0.05)
    assert density["fc"] == pytest.approx(0.9, abs=1 / kernel.size)
    assert density["conv"] == pytest.approx(0.95, abs=1 / 36)
    mask = np_(model.get_layer("fc").mask).astype(bool)
    assert np.abs(kernel[~mask]).max() <= np.abs(kernel[mask]).min()
    # A second round prunes 10 % of what remains: 0.9 * 0.9.
    density = prune_by_magnitude(model, 0.1, 0.05)
    assert density["fc"] == pytest.approx(0.81, abs=2 / kernel.size)
    # Masked weights do not contribute.
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    fc = model.get_layer("fc")
    feats = np_(keras.layers.Flatten()(model.get_layer("conv")(x)))
    np.testing.assert_allclose(np_(fc(feats)), feats @ (np_(fc.kernel) * np_(fc.mask)) + np_(fc.bias), rtol=1e-5, atol=1e-5)


def test_iterative_pruning_schedule_reaches_expected_compression():
    inp = keras.Input((20,))
    model = keras.Model(inp, PrunableDense(10, name="fc")(PrunableDense(30, name="fc0")(inp)))
    rounds = []
    iterative_pruning(model, lambda m, r: rounds.append(r), rounds=20)
    assert rounds == list(range(20))
    report = sparsity_report(model)
    # 0.9 ** 20 = 12.2 % of weights left: about 8x compression.
    assert report["compression"] == pytest.approx(1 / 0.9 ** 20, rel=0.1)


# ---------------------------------------------------------------- random switching / stochastic
def test_random_switch_uses_every_path_about_equally_and_can_be_fixed():
    paths = [keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(i),
                                name=f"p{i}") for i in range(5)]
    switch = RandomSwitch(paths, seed=0, name="sw")
    x = np.zeros((3, 2), "float32")
    draws = [np_(switch(x)) for _ in range(200)]
    assert all(np.all(d == d[0, 0]) for d in draws), "one path per forward pass for the whole batch"
    counts = np.bincount([int(d[0, 0]) for d in draws], minlength=5)
    assert counts.min() >= 20, counts  # expected 40 each
    switch.set_path(3)
    assert np.all(np_(switch(x)) == 3)
    with pytest.raises(ValueError, match="path must be"):
        switch.set_path(5)


def test_defensive_dropout_is_active_at_inference():
    layer = DefensiveDropout(0.5, seed=0)
    y = np_(layer(np.ones((1000, 10), "float32"), training=False))
    assert 0.4 < (y == 0).mean() < 0.6
    assert y.max() == pytest.approx(2.0)


def test_sap_is_unbiased_and_prunes_small_activations_more():
    layer = StochasticActivationPruning(ratio=2.0, seed=0)
    h = np.tile(np.linspace(0.01, 1.0, 40, dtype="float32"), (4000, 1))
    y = np_(layer(h))
    # Unbiased: E[y] = h (small activations are rarely kept, so noisier).
    np.testing.assert_allclose(y.mean(axis=0), h[0], rtol=0.1, atol=0.03)
    assert y.mean() == pytest.approx(h.mean(), rel=0.02)
    kept = (y > 0).mean(axis=0)
    # 80 draws: keep probability 1 - (1 - p)^80 is 0.04 for the smallest, 0.98 for the largest.
    assert kept[0] < 0.1 and kept[-1] > 0.95


# ---------------------------------------------------------------- Defend++
def test_dct_targets_scale0_is_identity_and_low_scales_are_lowpass():
    rng = np.random.default_rng(0)
    img = rng.random((2, 32, 32, 3)).astype("float32")
    targets = dct_lowpass_targets(img, num_scales=4)
    assert [tuple(t.shape) for t in targets] == [(2, 32, 32, 3), (2, 16, 16, 3), (2, 8, 8, 3)]  # 4x4 < 7
    np.testing.assert_allclose(np_(targets[0]), img, atol=1e-4)
    # A constant image stays constant (intensity preserved) at every scale.
    const = np.full((1, 32, 32, 1), 0.7, "float32")
    for t in dct_lowpass_targets(const, 3):
        np.testing.assert_allclose(np_(t), 0.7, atol=1e-4)
    # Low-pass: a smooth image is reproduced closely at half size.
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    smooth = (0.5 + 0.4 * np.sin(np.pi * xx) * np.cos(np.pi * yy))[None, :, :, None].astype("float32")
    half = np_(dct_lowpass_targets(smooth, 2)[1])
    assert np.abs(half - smooth.reshape(1, 16, 2, 16, 2, 1).mean(axis=(2, 4))).max() < 0.05
