"""airbench's training tricks (hardened.recipes.tricks) and test-time flip averaging (hardened.layers.tta)."""

import keras
import numpy as np
import pytest

from hardened.layers import FlipBatch, MeanOfHalves
from hardened.models import build_model
from hardened.recipes import tricks
from hardened.recipes.train import ArrayBatches, fit_model


def _tiny(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2), name="input")
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def test_scaled_sgd_multiplies_the_step_of_the_chosen_variables_only():
    model = _tiny()
    betas = tricks.batchnorm_betas(model)
    assert [v.path for v in betas] == ["bn/beta"]
    before = [keras.ops.convert_to_numpy(v.value).copy() for v in model.trainable_variables]
    opt = tricks.ScaledSGD(0.1, momentum=0.0, scaled_paths=[betas[0].path], scale=64.0)
    grads = [np.ones(v.shape, "float32") for v in model.trainable_variables]
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for v, b in zip(model.trainable_variables, before):
        step = b - keras.ops.convert_to_numpy(v.value)
        np.testing.assert_allclose(step, 6.4 if v.path == "bn/beta" else 0.1, rtol=1e-5)


def test_lookahead_pulls_weights_to_their_average_and_syncs_at_epoch_end():
    model = _tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4, 4, 2)).astype("float32"), rng.integers(0, 2, 40)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if hasattr(model, "jax_state_sync"):
                model.jax_state_sync()
            seen.append(keras.ops.convert_to_numpy(model.get_layer("logits").kernel.value).copy())

    look = tricks.Lookahead(total_steps=10, every=5, decay=0.5, power=1.0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[look, Spy()])
    ema = look._ema[[v.path for v in look._variables()].index("logits/kernel")]
    # After the epoch's last batch the weights are the average itself (nothing else to save for a resume).
    np.testing.assert_allclose(seen[-1], ema, rtol=1e-6)
    assert look._step == 10
    # The average lags the raw SGD path: lookahead changed the trajectory.
    model2 = _tiny()
    model2.compile(optimizer=keras.optimizers.SGD(0.5), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model2.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(keras.ops.convert_to_numpy(model2.get_layer("logits").kernel), seen[-1])


def test_alternating_flips_alternate_per_image():
    first, second, third = (tricks.alternating_flips(1000, e, seed=3) for e in (0, 1, 2))
    assert 400 < first.sum() < 600
    np.testing.assert_array_equal(second, ~first)
    np.testing.assert_array_equal(third, first)
    x = np.zeros((8, 4, 4, 1), "float32")
    x[:, :, 0] = 1.0  # left column
    data = ArrayBatches(x, np.zeros(8, "int64"), 8, augment="crop_altflip", pad=0, seed=3, shuffle=False)
    left0 = data[0][0][:, 0, 0, 0] == 1.0
    data.on_epoch_end()
    left1 = data[0][0][:, 0, 0, 0] == 1.0
    np.testing.assert_array_equal(left0, ~tricks.alternating_flips(8, 0, 3))
    np.testing.assert_array_equal(left1, ~left0)


def test_dirac_init_passes_channels_through():
    model = _tiny()
    assert tricks.dirac_init(model) == ["conv"]
    x = np.random.default_rng(1).random((2, 4, 4, 2)).astype("float32")
    conv = keras.ops.convert_to_numpy(model.get_layer("conv")(x))
    np.testing.assert_allclose(conv[..., :2], x, atol=1e-6)


def test_fit_model_with_airbench_tricks_trains_and_logs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((64, 4, 4, 2)).astype("float32")
    y = (x[:, :, :2].mean(axis=(1, 2, 3)) > x[:, :, 2:].mean(axis=(1, 2, 3))).astype("int64")
    model = _tiny()
    summary = fit_model(model, (x, y), (x[:16], y[:16]), tmp_path, epochs=2, batch_size=16, lr=0.2,
                        augment="crop_altflip", pad=1, lookahead=True, bn_bias_lr_scale=64.0,
                        lr_start_factor=0.2, lr_end_factor=0.07, label_smoothing=0.2, verbose=0)
    assert summary["epochs"] == 2 and np.isfinite(summary["train_loss"])
    with pytest.raises(ValueError, match="sgd"):
        fit_model(_tiny(), (x, y), (x, y), tmp_path / "b", epochs=1, optimizer="adam", bn_bias_lr_scale=2.0,
                  verbose=0)


@pytest.mark.parametrize("builder,size", [("fastcnn", 8), ("vgg19", 32)])
def test_flip_tta_is_the_mean_over_mirrors_at_inference_only(builder, size):
    kwargs = {"input_shape": (size, size, 3), "width": 0.0625, "hidden": (8, 8), "bn_momentum": 0.4,
              "bn_scale": False}
    keras.utils.set_random_seed(0)
    plain = build_model(builder, **kwargs)
    tta = build_model(builder, tta="flip", **kwargs)
    assert [w.path for w in tta.weights] == [w.path for w in plain.weights]
    assert not any(w.path.endswith("gamma") for w in plain.weights)
    tta.set_weights(plain.get_weights())
    x = np.random.default_rng(2).random((3, size, size, 3)).astype("float32")
    expected = 0.5 * (plain.predict(x, verbose=0) + plain.predict(x[:, :, ::-1], verbose=0))
    np.testing.assert_allclose(tta.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    assert tta(x, training=True).shape == (3, 10)
    with pytest.raises(ValueError, match="tta"):
        build_model(builder, tta="crop", **kwargs)
    assert isinstance(tta.get_layer("tta_flip"), FlipBatch) and isinstance(tta.get_layer("tta_mean"), MeanOfHalves)


def test_whitening_a_tta_model_sees_each_image_once():
    from hardened.recipes.train import whiten_conv

    kwargs = {"input_shape": (8, 8, 3), "width": 0.125, "hidden": (8, 8)}
    x = np.random.default_rng(3).random((64, 8, 8, 3)).astype("float32")
    eig = {}
    for tta in (None, "flip"):
        keras.utils.set_random_seed(0)
        eig[tta] = whiten_conv(build_model("fastcnn", tta=tta, **kwargs), "stem", x)
    np.testing.assert_allclose(eig["flip"], eig[None], rtol=1e-6)


def test_fit_model_data_follow_the_epoch_index():
    """Epoch e's shuffle is drawn from (seed, e) whatever ran before: a resumed run repeats an uninterrupted one."""
    x = np.arange(32, dtype="float32").reshape(32, 1, 1, 1)
    data = ArrayBatches(x, np.zeros(32, "int64"), 8, seed=1)
    data.set_epoch(3)
    third = data[0][0].ravel().copy()
    fresh = ArrayBatches(x, np.zeros(32, "int64"), 8, seed=1)
    for _ in range(3):
        fresh.on_epoch_end()
    np.testing.assert_array_equal(fresh[0][0].ravel(), third)
