"""Defend++ recipe (seed 003): joint model, loss, targets, checkpoint layout, control run, warm-up and resume.

Structure, loss and save/reload checks use a tiny ResNet-18 (width 0.0625,
no training). The training runs use a 4-stage mini ResNet with the same
``stage{b}_out`` taps (one conv per stage): tracing a ResNet-18 train step
costs ~20 s on this CPU, the mini one ~2 s. Data are 64 synthetic images.
"""

import json

import keras
import numpy as np
import pytest

import hardened
from hardened.layers.defendpp import dct_lowpass_targets
from hardened.models import BUILDERS, resnet18
from hardened.recipes import defendpp, presets
from hardened.recipes import run as run_mod
from hardened.recipes.train import read_log

N_TRAIN, N_TEST, BATCH = 64, 24, 32


# ----------------------------------------------------------------- tiny data and model
def synthetic(n, shape=(28, 28, 1), seed=0):
    """Images in [0, 1] whose class sets the brightness of one of 10 horizontal bands."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0.0, 0.3, (n, *shape))
    band = shape[0] // 10
    for i, k in enumerate(y):
        x[i, k * band:(k + 1) * band] += 0.6
    return x.astype("float32"), y.astype("int64")


TRAIN, TEST = synthetic(N_TRAIN, seed=0), synthetic(N_TEST, seed=1)


def mini_resnet(input_shape=(28, 28, 1), num_classes=10, defense=None, width=4):
    """Stem + 4 one-conv stages (strides 1, 2, 2, 2) with ResNet's tap names, GAP, logits."""
    inputs = keras.Input(tuple(input_shape), name="input")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stem_conv")(inputs)
    x = keras.layers.Identity(name="stem_out")(x)
    for s in range(1, 5):
        x = keras.layers.Conv2D(width * 2 ** (s - 1), 3, strides=1 if s == 1 else 2, padding="same", use_bias=False,
                                name=f"stage{s}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"stage{s}_bn")(x)
        x = keras.layers.ReLU(name=f"stage{s}_relu")(x)
        x = keras.layers.Identity(name=f"stage{s}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="mini_resnet")


def recipe(**settings):
    return {"kind": "defendpp", "builder": "mini_resnet", "dataset": "mnist",
            "kwargs": {"input_shape": [28, 28, 1]},
            "fit": {"epochs": 1, "batch_size": BATCH, "optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4,
                    "warmup_epochs": 0.5},
            "defendpp": {"decoder": True, "lambda": 0.01, "encoder_blocks": 4, "shared_blocks": 3, **settings}}


def fake_load_split(dataset, data_dir=None, max_train=None, max_test=None):
    return TRAIN, TEST


def run_direct(rec, out_dir, **overrides):
    return defendpp.run("tiny", rec, out_dir=out_dir, base_dir=None, work_dir=None, data_dir=None,
                        precision="float32", seed=0, max_train=None, max_test=None, verbose=0, note="test",
                        fit_overrides=overrides)


@pytest.fixture
def mini_env(monkeypatch):
    monkeypatch.setitem(BUILDERS, "mini_resnet", mini_resnet)
    monkeypatch.setattr(defendpp, "load_split", fake_load_split)


def tiny_resnet(shape=(28, 28, 1)):
    return resnet18(input_shape=shape, width=0.0625)


def wake_decoder(decoder, seed=0):
    """Random gammas/betas for the output BatchNorms (initialised to output 0), so reconstructions are not trivial."""
    rng = np.random.default_rng(seed)
    for layer in decoder.layers:
        if layer.name.startswith("decoder_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.uniform(-0.2, 0.2, beta.shape).astype("float32"), mean, var])


def layer_shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers}


# ----------------------------------------------------------------- targets and scales
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_numpy_targets_match_dct_lowpass_targets(shape):
    x = np.random.default_rng(0).random((3, *shape)).astype("float32")
    ours = defendpp.lowpass_targets(x, 5)
    ref = [keras.ops.convert_to_numpy(t) for t in dct_lowpass_targets(x, 5)]
    assert [t.shape for t in ours] == [t.shape for t in ref]
    assert [t.shape[1] for t in ours] == ([28, 14, 7] if shape[0] == 28 else [32, 16, 8])  # nothing below 7
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ours[0], x, atol=1e-5)  # I^0 is the image


def test_scale_sizes_stop_below_7x7_and_at_the_bottleneck():
    assert defendpp.scale_sizes((28, 28), (4, 4)) == [(28, 28), (14, 14), (7, 7)]
    assert defendpp.scale_sizes((32, 32), (4, 4)) == [(32, 32), (16, 16), (8, 8)]
    assert defendpp.scale_sizes((64, 64), (4, 4)) == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert defendpp.scale_sizes((32, 32), (16, 16)) == [(32, 32), (16, 16)]


@pytest.mark.parametrize("shape,shared,taps", [((28, 28, 1), 4, ["stage1_out", "stage2_out", "stage4_out"]),
                                               ((32, 32, 3), 3, ["stage1_out", "stage2_out", "stage3_out"])])
def test_resnet18_joint_model_structure(shape, shared, taps):
    m = defendpp.build_defendpp(tiny_resnet(shape), encoder_blocks=4, shared_blocks=shared)
    side = shape[0]
    sizes = [side, side // 2, side // 4]
    assert m.scales == [(s, s) for s in sizes]
    assert sorted(m.joint.output) == ["logits", "recon0", "recon1", "recon2"]  # no scale below 7x7
    for i, s in enumerate(sizes):
        assert tuple(m.joint.output[f"recon{i}"].shape) == (None, s, s, shape[2])
    assert m.taps == taps and [t.name for t in m.decoder.inputs] == taps
    names = {layer.name for layer in m.decoder.layers}
    # U and H modules at the two finer scales, D_{M-1} from the bottleneck, an AE-only stage 4 when not shared.
    assert {"decoder_u0", "decoder_h0", "decoder_u1", "decoder_h1", "decoder_top_conv1", "decoder_top_up1"} <= names
    assert ("ae_stage4" in names) == (shared == 3)
    assert ("decoder_top_crop" in names) == (side == 28)  # 4x4 -> 8x8 -> cropped to 7x7
    assert isinstance(m.decoder.get_layer("decoder_u0"), hardened.layers.DecoderUp)
    assert isinstance(m.decoder.get_layer("decoder_h1"), hardened.layers.DecoderSkip)
    for i in range(3):  # each scale's output is normalised, starting from 0 (see defendpp._out_norm)
        bn = m.decoder.get_layer(f"decoder_bn{i}")
        assert float(np.abs(keras.ops.convert_to_numpy(bn.gamma)).max()) == 0.0
    x = np.random.default_rng(0).random((2, *shape)).astype("float32")
    assert all(np.abs(r).max() == 0.0 for r in defendpp.reconstruct(m.classifier, m.decoder, x))
    # The classifier is untouched: same layers as a fresh build.
    assert layer_shapes(m.classifier) == layer_shapes(tiny_resnet(shape))


# ----------------------------------------------------------------- loss
def test_joint_loss_is_ce_plus_recon0_plus_lambda_times_other_scales():
    lam = 0.25  # not the default, so a swapped or missing weight shows
    m = defendpp.build_defendpp(tiny_resnet(), encoder_blocks=4, shared_blocks=4)
    wake_decoder(m.decoder)
    losses, weights = defendpp.joint_losses(len(m.scales), lam)
    assert weights == {"logits": 1.0, "recon0": 1.0, "recon1": lam, "recon2": lam}
    m.joint.compile(optimizer="sgd", loss=losses, loss_weights=weights)
    batches = defendpp.DefendppBatches(*TRAIN, 16, outputs=list(m.joint.output), shuffle=False)
    x, targets = batches[0]
    assert sorted(targets) == ["logits", "recon0", "recon1", "recon2"]
    reported = m.joint.evaluate(x, targets, batch_size=16, verbose=0, return_dict=True)

    pred = m.joint.predict(x, batch_size=16, verbose=0)
    logits = pred["logits"].astype("float64")
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    ce = -np.mean(logp[np.arange(len(x)), targets["logits"]])
    mse = [np.mean((pred[f"recon{i}"] - t) ** 2) for i, t in enumerate(defendpp.lowpass_targets(x, 3))]
    expected = ce + mse[0] + lam * (mse[1] + mse[2])
    assert reported["loss"] == pytest.approx(expected, rel=1e-4)
    assert reported["recon1_loss"] == pytest.approx(mse[1], rel=1e-4)


# ----------------------------------------------------------------- save / reload without training
def test_resnet18_classifier_and_decoder_reload(tmp_path):
    m = defendpp.build_defendpp(tiny_resnet((32, 32, 3)), encoder_blocks=4, shared_blocks=3)
    wake_decoder(m.decoder)
    hardened.save_pretrained(m.classifier, tmp_path)
    hardened.save_pretrained(m.decoder, tmp_path / "decoder")
    clf = hardened.load_pretrained(tmp_path)
    dec = hardened.load_pretrained(tmp_path / "decoder")
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(clf.predict(x, verbose=0), m.classifier.predict(x, verbose=0))
    joint = m.joint.predict(x, verbose=0)
    for i, r in enumerate(defendpp.reconstruct(clf, dec, x, batch_size=3)):
        assert r.std() > 1e-2
        np.testing.assert_allclose(r, joint[f"recon{i}"], atol=1e-6)


# ----------------------------------------------------------------- end-to-end runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The Defend++ recipe and its control run once each through `run_recipe`; the saved models recorded."""
    root = tmp_path_factory.mktemp("defendpp")
    saved = {}
    real_save = defendpp.save_pretrained

    def spy(model, directory, metadata=None):
        saved[str(directory)] = model
        return real_save(model, directory, metadata=metadata)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BUILDERS, "mini_resnet", mini_resnet)
        mp.setattr(defendpp, "load_split", fake_load_split)
        mp.setattr(defendpp, "save_pretrained", spy)
        mp.setitem(presets.RECIPES, "tiny-defendpp", recipe())
        mp.setitem(presets.RECIPES, "tiny-control", recipe(decoder=False))
        dpp = run_mod.run_recipe("tiny-defendpp", root / "dpp", precision="float32", verbose=0, note="test")
        ctl = run_mod.run_recipe("tiny-control", root / "ctl", precision="float32", verbose=0, note="test")
    return {"dpp": dpp, "ctl": ctl, "saved": saved}


def test_released_classifier_reloads_as_plain_classifier(runs):
    out = runs["dpp"]
    clf = hardened.load_pretrained(out)
    trained = runs["saved"][str(out)]
    np.testing.assert_array_equal(clf.predict(TEST[0], verbose=0), trained.predict(TEST[0], verbose=0))
    assert layer_shapes(clf) == layer_shapes(mini_resnet())  # the classifier alone: no decoder, no AE blocks
    assert clf.output_shape == (None, 10) and len(clf.outputs) == 1
    meta = clf.hardened_metadata
    for key in ("recipe", "recipe_spec", "fit", "architecture", "training", "test_accuracy", "n_test", "note",
                "dataset", "class_names", "commit", "command"):
        assert key in meta, key
    assert meta["architecture"] == {"builder": "mini_resnet", "kwargs": {"input_shape": [28, 28, 1]}}
    info = meta["defendpp"]
    assert info["decoder"] is True and info["lambda"] == 0.01 and info["decoder_folder"] == "decoder"
    assert info["scale_sizes"] == [[28, 28], [14, 14], [7, 7]] and info["min_size"] == 7
    assert meta["test_accuracy"] == pytest.approx(float(np.mean(clf.predict(TEST[0], verbose=0).argmax(1) == TEST[1])))
    assert (out / "reconstruction.png").stat().st_size > 0 and (out / "training_curve.png").exists()
    assert meta["training"]["epochs"] == 1 and meta["training"]["recon_loss_last_epoch"]["recon2"] is not None


def test_decoder_folder_reloads_and_reproduces_the_reconstruction(runs):
    out = runs["dpp"]
    dec = hardened.load_pretrained(out / "decoder")
    clf = hardened.load_pretrained(out)
    recons = defendpp.reconstruct(clf, dec, TEST[0], batch_size=10)
    trained = defendpp.reconstruct(runs["saved"][str(out)], runs["saved"][str(out / "decoder")], TEST[0])
    assert [r.shape for r in recons] == [(N_TEST, 28, 28, 1), (N_TEST, 14, 14, 1), (N_TEST, 7, 7, 1)]
    for a, b in zip(recons, trained):
        np.testing.assert_allclose(a, b, atol=1e-6)
    meta = json.loads((out / "decoder" / "metadata.json").read_text())
    assert meta["input_taps"] == [t.name for t in dec.inputs]
    targets = defendpp.lowpass_targets(TEST[0], 3)
    mse = [float(np.mean((r - t) ** 2)) for r, t in zip(recons, targets)]
    np.testing.assert_allclose(mse, meta["defendpp"]["test_recon_mse"], rtol=1e-4)


def test_control_run_trains_the_same_classifier_without_decoder(runs):
    dpp, ctl = hardened.load_pretrained(runs["dpp"]), hardened.load_pretrained(runs["ctl"])
    assert layer_shapes(ctl) == layer_shapes(dpp)
    assert not (runs["ctl"] / "decoder").exists() and not (runs["ctl"] / "reconstruction.png").exists()
    meta = ctl.hardened_metadata
    assert meta["defendpp"]["decoder"] is False and meta["defendpp"]["decoder_folder"] is None
    assert meta["fit"] == dpp.hardened_metadata["fit"]
    header = (runs["ctl"] / "training_log.csv").read_text().splitlines()[0]
    assert "recon" not in header


def test_alternate_warmup_then_resume(tmp_path, mini_env, monkeypatch):
    calls = []
    real_fit = defendpp._fit_phase

    def spy(model, outputs, *args, **kwargs):
        rows = real_fit(model, outputs, *args, **kwargs)
        calls.append((model.name, int(keras.ops.convert_to_numpy(model.optimizer.iterations))))
        return rows

    monkeypatch.setattr(defendpp, "_fit_phase", spy)
    rec = recipe(warmup="alternate", warmup_cycles=1, warmup_phase_epochs=1)
    out = run_direct(rec, tmp_path / "out")
    steps = N_TRAIN // BATCH
    assert calls == [("defendpp_autoencoder", steps), ("defendpp_classifier", steps), ("mini_resnet_defendpp", steps)]
    warm = tmp_path / "out" / "_backup" / "warmup"
    assert json.loads((warm / "state.json").read_text()) == {"done": 2}

    # Same folder, more epochs: the warm-up is skipped and the joint phase continues from its backup.
    calls.clear()
    run_direct(rec, out, epochs=2)
    assert calls == [("mini_resnet_defendpp", 2 * steps)]  # optimizer state restored, one more epoch
    raw = [line.split(",")[0] for line in (out / "training_log.csv").read_text().splitlines()[1:]]
    assert raw == ["0", "1"]
    assert [len(read_log(p)) for p in sorted(warm.glob("phase*_log.csv"))] == [1, 1]
    meta = hardened.load_pretrained(out).hardened_metadata
    assert meta["training"]["epochs"] == 2
    assert meta["training"]["warmup"]["phases"] == ["autoencoder", "classifier"]


def test_a_restored_phase_does_not_make_the_next_fit_of_the_same_model_skip(tmp_path, mini_env):
    # Warm-up cycle 2 fits the sub-model of cycle 1 again; a restore in cycle 1 must not leak into it.
    m = defendpp.build_defendpp(mini_resnet(), decoder=False)
    settings, fit = defendpp.check_recipe("tiny", recipe(decoder=False))
    losses, weights = defendpp.joint_losses(0, 0.01)

    def phase(backup):
        defendpp._fit_phase(m.joint, ["logits"], losses, weights, TRAIN, TEST, fit, 0.01, 1, tmp_path / "log.csv",
                            tmp_path / backup, 0, 0, 10)
        return int(keras.ops.convert_to_numpy(m.joint.optimizer.iterations))

    steps = N_TRAIN // BATCH
    assert phase("a") == steps
    assert phase("a") == steps  # finished backup restored: nothing to do (fresh optimizer restored to `steps`)
    assert phase("b") == steps  # a new phase trains its epoch


# ----------------------------------------------------------------- recipe checks
BAD_SETTINGS = [
    ({"lambda": -0.1}, "lambda"),
    ({"lambda": "0.01"}, "lambda"),
    ({"lambda": float("nan")}, "lambda"),
    ({"warmup": "cyclic"}, "warmup"),
    ({"warmup": "alternate", "decoder": False}, "needs 'decoder': True"),
    ({"decoder": "yes"}, "decoder"),
    ({"lamda": 0.01}, "did you mean 'lambda'"),
    ({"shared_blocks": 5}, "cannot exceed"),
    ({"shared_blocks": 0}, "shared_blocks"),
    ({"encoder_blocks": 5, "shared_blocks": 5}, "stage5_out"),
    ({"warmup_cycles": 1.5}, "warmup_cycles"),
]


@pytest.mark.parametrize("settings,match", BAD_SETTINGS)
def test_bad_defendpp_settings_raise(settings, match, tmp_path, mini_env):
    with pytest.raises(ValueError, match=match):
        run_direct(recipe(**settings), tmp_path / "x")


def test_bad_recipes_raise(tmp_path, mini_env):
    rec = recipe()
    rec["fit"]["epoch"] = 3
    with pytest.raises(ValueError, match="unknown fit keys"):
        run_direct(rec, tmp_path / "x")
    rec = recipe()
    rec["builder"] = "cnn7"  # no stage taps
    with pytest.raises(ValueError, match="named stage"):
        run_direct(rec, tmp_path / "x")
    with pytest.raises(ValueError, match="epochs"):
        run_direct(recipe(), tmp_path / "x", epochs=0)
    with pytest.raises(TypeError, match="Unknown training options"):
        run_direct(recipe(), tmp_path / "x", lambda_=1)
    with pytest.raises(ValueError, match="from scratch"):
        defendpp.run("tiny", recipe(), out_dir=tmp_path, base_dir=tmp_path, work_dir=None, data_dir=None,
                     precision="float32", seed=0, max_train=None, max_test=None, verbose=0, note=None,
                     fit_overrides={})
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_preset_pairs_differ_only_in_the_decoder():
    for dataset in ("cifar10", "mnist"):
        dpp, ctl = presets.RECIPES[f"resnet18-defendpp-{dataset}"], presets.RECIPES[f"resnet18-{dataset}"]
        assert dpp["kind"] == ctl["kind"] == "defendpp" and dpp["builder"] == "resnet18"
        settings, fit = defendpp.check_recipe(dataset, dpp)
        assert settings["decoder"] is True and settings["lambda"] == 0.01
        assert defendpp.check_recipe(dataset, ctl)[0]["decoder"] is False
        assert {k: v for k, v in dpp.items() if k != "defendpp"} == {k: v for k, v in ctl.items() if k != "defendpp"}
    assert presets.RECIPES["resnet18-defendpp-cifar10"]["defendpp"]["shared_blocks"] == 3  # paper: 3 on CIFAR-10
    assert presets.RECIPES["resnet18-defendpp-mnist"]["defendpp"]["shared_blocks"] == 4  # and 4 on MNIST
