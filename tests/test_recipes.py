"""Recipes: resumable `fit_model`, `ArrayBatches`, the LR schedule, `run_recipe` end to end,
the compression-ratio search (seed 000 Algorithm 1) and data-parallel training.

Everything runs on tiny synthetic 8x8 data and a tiny conv net registered for
the test; no dataset files are read.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import hardened
from hardened.layers import HashedDense
from hardened.models import BUILDERS, classifier_head
from hardened.recipes import cr_search, distributed, presets
from hardened.recipes import run as run_mod
from hardened.recipes.train import ArrayBatches, WarmupLinearDecay, _crop_flip, fit_model, read_log, whiten_conv

BACKEND = keras.backend.backend()
REAL_RECIPES = presets.RECIPES  # tiny_env swaps the module's table for TINY_RECIPES while it lives
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- tiny data and model
def tiny_data(n, seed=0, num_classes=10):
    """8x8x1 images: class k has a bright 2x2 block at cell k of a 4x4 grid, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.uniform(0.0, 0.2, (n, 8, 8, 1))
    for i, k in enumerate(y):
        r, c = divmod(int(k), 4)
        x[i, 2 * r:2 * r + 2, 2 * c:2 * c + 2, 0] += 0.8
    return x.astype("float32"), y.astype("int64")


def tiny_builder(input_shape=(8, 8, 1), num_classes=10, defense=None, hidden=(16, 16)):
    """conv1 -> flatten -> fc1 -> fc2 -> logits (the shared defended head)."""
    inputs = keras.Input(tuple(input_shape), name="input")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = classifier_head(x, num_classes, hidden=tuple(hidden), defense=defense)
    return keras.Model(inputs, outputs, name="tiny")


def dense_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


TRAIN = tiny_data(128, seed=0)
TEST = tiny_data(48, seed=1)
TINY_FIT = {"epochs": 5, "batch_size": 16, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
            "warmup_epochs": 0.5, "augment": None}
TINY_RECIPES = {
    "tiny-base": {"kind": "base", "builder": "tiny_test", "dataset": "mnist",
                  "kwargs": {"input_shape": [8, 8, 1], "hidden": [16, 16]}, "fit": TINY_FIT},
    "tiny-hash": {"kind": "hash", "base": "tiny-base", "dataset": "mnist", "compression": [1 / 4, 1 / 8],
                  "hash_seed": 0, "fit": dict(TINY_FIT, epochs=1, lr=0.02)},
}


def fake_load_split(dataset, data_dir=None, max_train=None, max_test=None):
    (x, y), (xt, yt) = TRAIN, TEST
    return (x[:max_train], y[:max_train]), (xt[:max_test], yt[:max_test])


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    """The tiny builder and recipes registered, synthetic data patched in, and the base recipe run once."""
    root = tmp_path_factory.mktemp("recipes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BUILDERS, "tiny_test", tiny_builder)
        mp.setattr(presets, "RECIPES", TINY_RECIPES)
        mp.setattr(run_mod, "load_split", fake_load_split)
        mp.setattr(cr_search, "load_split", fake_load_split)
        keras.utils.set_random_seed(0)
        base = run_mod.run_recipe("tiny-base", root / "base", precision="auto", verbose=0)
        yield {"root": root, "base": base}


# ----------------------------------------------------------------- fit_model
class _Interrupt(Exception):
    pass


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Interrupt


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def _with_callback(model, callback):
    """Make ``model.fit`` (as fit_model calls it) also run ``callback``."""
    fit = model.fit

    def patched(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=list(callbacks) + [callback], **kwargs)

    model.fit = patched
    return model


def test_fit_model_resumes_after_interruption(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    kwargs = dict(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0.5, work_dir=work, verbose=0)
    keras.utils.set_random_seed(0)
    with pytest.raises(_Interrupt):
        fit_model(_with_callback(dense_model(), _StopAfterFirstEpoch()), TRAIN, TEST, out, **kwargs)
    assert [r["epoch"] for r in read_log(out / "training_log.csv")] == [0]

    keras.utils.set_random_seed(0)  # a new process: fresh model, same arguments
    recorder = _EpochRecorder()
    model = _with_callback(dense_model(), recorder)
    summary = fit_model(model, TRAIN, TEST, out, **kwargs)
    assert recorder.epochs == [1]  # epoch 0 was restored, not redone
    steps = len(TRAIN[0]) // 32
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 * steps  # optimizer state continued
    with open(out / "training_log.csv") as f:
        raw = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    assert raw == ["0", "1"]
    assert summary["train_accuracy"] is not None and (out / "training_curve.png").exists()


def test_a_restored_fit_does_not_make_the_next_fit_of_the_same_model_skip_epochs(tmp_path):
    # Keras' BackupAndRestore leaves model._initial_epoch set after restoring (pruning rounds and HRS
    # blocks fit one model object several times, each with its own backup folder).
    kwargs = dict(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0.0, verbose=0)
    model = dense_model()
    fit_model(model, TRAIN, TEST, tmp_path / "a", **kwargs)
    recorder = _EpochRecorder()
    fit_model(_with_callback(model, recorder), TRAIN, TEST, tmp_path / "a", **kwargs)
    assert recorder.epochs == []  # finished run: restored, nothing to do
    fit_model(model, TRAIN, TEST, tmp_path / "b", **kwargs)
    assert recorder.epochs == [0]  # a new backup folder trains from its first epoch


def test_read_log_keeps_last_row_of_a_repeated_epoch(tmp_path):
    log = tmp_path / "training_log.csv"
    log.write_text("epoch,accuracy,loss\n0,0.5,1.0\n1,0.6,0.9\nepoch,accuracy,loss\n1,0.7,0.8\n2,0.8,0.7\n")
    rows = read_log(log)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[1]["accuracy"] == pytest.approx(0.7)
    assert read_log(tmp_path / "missing.csv") == []


# ----------------------------------------------------------------- ArrayBatches and schedule
def test_array_batches_deterministic_per_seed_and_epoch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 6, 6, 3)).astype("float32")
    y = np.arange(40)

    def batches(seed, epochs=2):
        data = ArrayBatches(x, y, 16, augment="crop_flip", pad=2, seed=seed)
        out = []
        for _ in range(epochs):
            out.append([data[i] for i in range(len(data))])
            data.on_epoch_end()
        return out

    a, b, c = batches(3), batches(3), batches(4)
    for ea, eb in zip(a, b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0][1], a[1][0][1])  # another epoch, another order
    assert not np.array_equal(a[0][0][1], c[0][0][1])  # another seed, another order
    xb, yb = a[0][0]
    assert xb.shape == (16, 6, 6, 3) and xb.dtype == np.float32
    assert xb.min() >= x.min() and xb.max() <= x.max()
    assert [len(a[0][i][1]) for i in range(3)] == [16, 16, 8]
    assert sorted(np.concatenate([yy for _, yy in a[0]]).tolist()) == list(range(40))


def test_array_batches_trims_ragged_batch_for_replicas():
    x, y = np.zeros((37, 2, 2, 1), "float32"), np.arange(37)
    data = ArrayBatches(x, y, 16, multiple_of=4)
    assert len(data) == 3 and [len(data[i][1]) for i in range(3)] == [16, 16, 4]
    assert len(ArrayBatches(x[:34], y[:34], 16, multiple_of=4)) == 2  # a 2-image remainder is dropped
    with pytest.raises(ValueError, match="multiple"):
        ArrayBatches(x, y, 10, multiple_of=4)


def test_crop_flip_really_flips():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 5, 5, 2)).astype("float32")
    out = _crop_flip(x, 0, np.random.default_rng(1))
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    assert np.all(same | flipped) and same.any() and flipped.any()


def test_crop_augment_shifts_without_flipping():
    """"crop" (digits) shifts within the padding and never mirrors; unknown names are refused."""
    x = np.zeros((32, 6, 6, 1), "float32")
    x[:, 1:3, 0] = 1.0  # a bar on the left edge: a flip would move it to the right half
    data = ArrayBatches(x, np.zeros(32, "int64"), 32, augment="crop", pad=1, seed=0)
    out, _ = data[0]
    assert out[:, :, 3:].sum() == 0 and not np.array_equal(out, x)
    with pytest.raises(ValueError, match="augment must be one of"):
        ArrayBatches(x, np.zeros(32, "int64"), 32, augment="flip")


def test_warmup_linear_decay_values():
    schedule = WarmupLinearDecay(peak=2.0, total_steps=110, warmup_steps=10, start_factor=0.1, end_factor=0.0)
    value = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert value(0) == pytest.approx(0.2)
    assert value(5) == pytest.approx(1.1)
    assert value(10) == pytest.approx(2.0)
    assert value(60) == pytest.approx(1.0)
    assert value(110) == pytest.approx(0.0, abs=1e-7)
    assert value(200) == pytest.approx(0.0, abs=1e-7)
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == schedule.get_config()


def test_no_decay_layers_keep_their_weights_under_pure_decay(tmp_path):
    """With lr>0 but a zero loss gradient nothing but decay moves weights: fc1 shrinks, logits do not."""
    keras.utils.set_random_seed(0)
    model = dense_model()
    before = {name: model.get_layer(name).get_weights()[0].copy() for name in ("fc1", "logits")}
    x = np.zeros((64, 8, 8, 1), "float32")  # zero input: no gradient reaches the kernels
    y = np.zeros(64, "int64")
    fit_model(model, (x, y), (x[:8], y[:8]), tmp_path, epochs=1, batch_size=32, lr=0.5, momentum=0.0,
              weight_decay=0.1, warmup_epochs=0.0, no_decay_layers=["logits"], verbose=0)
    fc1 = model.get_layer("fc1").get_weights()[0]
    assert np.abs(fc1).sum() < 0.99 * np.abs(before["fc1"]).sum()
    np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0], before["logits"])
    with pytest.raises(ValueError, match="no_decay_layers"):
        fit_model(dense_model(), (x, y), (x[:8], y[:8]), tmp_path / "b", epochs=1, weight_decay=0.1,
                  no_decay_layers=["nope"], verbose=0)


def test_whiten_conv_decorrelates_patches():
    rng = np.random.default_rng(0)
    # Correlated 3-channel images: a shared smooth component plus channel noise.
    base = rng.normal(size=(200, 12, 12, 1))
    x = (0.8 * base + 0.2 * rng.normal(size=(200, 12, 12, 3))).astype("float32")
    inputs = keras.Input((12, 12, 3))
    outputs = keras.layers.Conv2D(8, 2, padding="valid", use_bias=False, name="stem")(inputs)
    model = keras.Model(inputs, outputs)
    eigvals = whiten_conv(model, "stem", x, eps=0.0)
    assert eigvals == sorted(eigvals, reverse=True) and len(eigvals) == 4
    out = np.asarray(model.predict(x, verbose=0)).reshape(-1, 8)
    cov = np.cov(out[:, :4], rowvar=False)
    np.testing.assert_allclose(cov, np.eye(4), atol=0.05)  # unit variance, uncorrelated
    np.testing.assert_allclose(out[:, 4:], -out[:, :4], atol=1e-5)  # second half: the negatives
    with pytest.raises(ValueError, match="even number"):
        odd = keras.Model(inputs, keras.layers.Conv2D(3, 2, name="odd")(inputs))
        whiten_conv(odd, "odd", x)


# ----------------------------------------------------------------- run_recipe
def test_run_recipe_base_then_hash(tiny_env, monkeypatch):
    base_dir = tiny_env["base"]
    for name in ("config.json", "model.safetensors", "metadata.json", "training_log.csv", "training_curve.png"):
        assert (base_dir / name).exists(), name
    meta = json.loads((base_dir / "metadata.json").read_text())
    assert meta["architecture"] == {"builder": "tiny_test", "kwargs": {"input_shape": [8, 8, 1], "hidden": [16, 16]}}
    assert meta["dataset"] == "mnist" and meta["recipe"] == "tiny-base"
    assert meta["randomized"] is False  # no SAP/dropout/noise layer
    assert "command" in meta and "commit" in meta
    assert meta["test_accuracy"] > 0.3  # 10 classes, separable: well above chance (0.1)
    assert "bfloat16" not in (base_dir / "config.json").read_text()  # released in float32
    base = hardened.load_pretrained(base_dir)
    assert base.hardened_metadata["test_accuracy"] == meta["test_accuracy"]

    monkeypatch.setitem(BUILDERS, "tiny_test", tiny_builder)
    monkeypatch.setattr(presets, "RECIPES", TINY_RECIPES)
    monkeypatch.setattr(run_mod, "load_split", fake_load_split)
    # lr=0: nothing moves, so the hash checkpoint shows exactly what was copied before training.
    hash_dir = run_mod.run_recipe("tiny-hash", tiny_env["root"] / "hash", base_dir=base_dir, precision="float32",
                                  verbose=0, lr=0.0)
    hashed = hardened.load_pretrained(hash_dir)
    info = hashed.hardened_metadata["base_checkpoint"]
    assert info["copied_layers"] == ["conv1", "fc1"]
    for layer_name, cr in (("fc2", 1 / 4), ("logits", 1 / 8)):
        layer = hashed.get_layer(layer_name)
        assert isinstance(layer, HashedDense) and layer.compression == pytest.approx(cr)
    for layer_name in ("conv1", "fc1"):
        for w_hash, w_base in zip(hashed.get_layer(layer_name).get_weights(), base.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(w_hash, w_base)
    assert hashed.hardened_metadata["architecture"]["kwargs"]["defense"]["hashed"] == [0.25, 0.125]


def test_hash_recipe_adds_the_extra_fc_of_single_fc_bases(tiny_env, monkeypatch, tmp_path):
    # Seed 000 gives ResNet / Inception (one FC layer) an extra hashed FC-512: with ``extra_fc`` the transfer
    # builds fc1 (new, hashed) + logits (hashed, new shape) and copies only the convs.
    recipes = {"single-base": {"kind": "base", "builder": "tiny_test", "dataset": "mnist",
                               "kwargs": {"input_shape": [8, 8, 1], "hidden": []}, "fit": dict(TINY_FIT, epochs=1)},
               "single-hash": {"kind": "hash", "base": "single-base", "dataset": "mnist", "compression": [1 / 4, 1 / 8],
                               "hash_seed": 0, "extra_fc": 12, "fit": dict(TINY_FIT, epochs=1, lr=0.0)}}
    monkeypatch.setitem(BUILDERS, "tiny_test", tiny_builder)
    monkeypatch.setattr(presets, "RECIPES", recipes)
    monkeypatch.setattr(run_mod, "load_split", fake_load_split)
    base_dir = run_mod.run_recipe("single-base", tmp_path / "base", precision="float32", verbose=0)
    hashed = hardened.load_pretrained(
        run_mod.run_recipe("single-hash", tmp_path / "hash", base_dir=base_dir, precision="float32", verbose=0))
    assert hashed.hardened_metadata["base_checkpoint"]["copied_layers"] == ["conv1"]
    assert hashed.hardened_metadata["architecture"]["kwargs"]["defense"]["extra_fc"] == 12
    for layer_name, cr, units in (("fc1", 1 / 4, 12), ("logits", 1 / 8, 10)):
        layer = hashed.get_layer(layer_name)
        assert isinstance(layer, HashedDense) and layer.compression == pytest.approx(cr) and layer.units == units


def test_resnet18_hash_recipe_is_seed_000s_resnet_variant():
    recipe = REAL_RECIPES["resnet18-hash-cifar10"]
    assert recipe["base"] == "resnet18-cifar10" and recipe["extra_fc"] == 512
    assert recipe["compression"] == [1 / 8192, 1 / 256] and recipe["fit"]["epochs"] == 3


# ----------------------------------------------------------------- CR search (seed 000 Algorithm 1)
def test_paper_grid_and_reduced_grid():
    cr1, cr2 = cr_search.paper_grid(256, 256, 256, 10)  # cnn7's fc2 and logits
    assert cr1[0] == pytest.approx(1 / 256) and cr1[-1] == pytest.approx(1 / 32768) and len(cr1) == 8
    assert cr2[0] == 0.5 and cr2[-1] == pytest.approx(1 / 2048) and len(cr2) == 11
    cr1, cr2 = cr_search.paper_grid(256, 256, 256, 10, start=(1 / 16, 1 / 2), min_cr=(1 / 65536, 1 / 2048))
    assert cr1[-1] == pytest.approx(1 / 65536) and len(cr1) == 13  # min_cr is inclusive
    grid = cr_search.reduced_grid([1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11], 3)
    assert grid == [(3, 5), (3, 8), (3, 11)]
    assert len(cr_search.reduced_grid([1, 2, 3, 4], [5, 6, 7, 8], 5)) == 4
    assert cr_search.ratio_label(1 / 4096) == "1/4096"


def test_cr_search_marks_rejections_and_resumes(tiny_env, monkeypatch):
    monkeypatch.setitem(BUILDERS, "tiny_test", tiny_builder)
    calls = []
    real_fit = cr_search.fit_model
    monkeypatch.setattr(cr_search, "fit_model", lambda *a, **k: calls.append(k) or real_fit(*a, **k))
    out = tiny_env["root"] / "search"
    common = dict(max_candidates=3, epochs=1, n_estimator=16, precision="float32", progress=False)
    table = cr_search.search_compression(tiny_env["base"], None, out, threshold=1.0, **common)
    assert len(calls) == 3 and calls[0]["epochs"] == 1
    saved = json.loads((out / "cr_search.json").read_text())
    assert (out / "cr_search.png").exists()
    rows = saved["candidates"]
    assert len(rows) == 3 and saved["budget"]["reduced"] and saved["budget"]["grid_size_full"] == 28
    assert saved["hashed_layers"]["names"] == ["fc2", "logits"]
    assert [(r["cr1"], r["cr2"]) for r in rows] == [(1 / 64, 1 / 2), (1 / 64, 1 / 16), (1 / 64, 1 / 128)]
    assert [(r["k1"], r["k2"]) for r in rows] == [(4, 80), (4, 10), (4, 1)]
    for row in rows:
        assert row["accepted"] and 0 <= row["R"] <= 1 and row["seconds"] > 0
        assert row["R"] == pytest.approx(0.5 * row["g_norm"] + 0.5 * row["phi_norm"])
        assert hardened.load_pretrained(row["checkpoint"]).get_layer("logits").compression == pytest.approx(row["cr2"])
        assert row["copied_layers"] == ["conv1", "fc1"]
    assert table["choice"]["R"] == min(r["R"] for r in rows)

    # Resume with another T: nothing is retrained, the table is re-scored.
    t = sorted(r["drop"] for r in rows)[1]
    table = cr_search.search_compression(tiny_env["base"], None, out, threshold=t, **common)
    assert len(calls) == 3
    for row in table["candidates"]:
        assert row["accepted"] == (row["drop"] < t)
        if not row["accepted"]:
            assert row["R"] == 1.0
    everyone_out = cr_search.search_compression(tiny_env["base"], None, out, threshold=-1.0, **common)
    assert len(calls) == 3 and everyone_out["choice"] is None
    assert not any(r["accepted"] for r in everyone_out["candidates"])
    with pytest.raises(ValueError, match="other settings"):
        cr_search.search_compression(tiny_env["base"], None, out, **dict(common, epochs=2))


# ----------------------------------------------------------------- data parallel
def test_no_distribution_means_one_replica():
    assert distributed.replica_count() == 1


@pytest.mark.skipif(BACKEND != "torch", reason="the torch refusal is checked under KERAS_BACKEND=torch")
def test_data_parallel_refused_on_torch():
    with pytest.raises(NotImplementedError, match="JAX or TensorFlow|jax"):
        with distributed.data_parallel():
            pass


# Shared by both engines: the same tiny model trained by fit_model on one device and data-parallel on two.
_DP_COMMON = """
import json, tempfile
import numpy as np
import keras
from hardened.recipes.distributed import data_parallel, replica_count
from hardened.recipes.train import ArrayBatches, fit_model, read_log

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 4, 4, 1)).astype("float32")
y = (x.reshape(16, -1).sum(1) > 0).astype("int64") + 2 * (x[:, 0, 0, 0] > 0)
xt, yt = x[:6], y[:6]

def make():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Dense(8, activation="relu", name="fc1")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(h))

def train(model, n=16):
    out = tempfile.mkdtemp()
    fit_model(model, (x[:n], y[:n]), (xt, yt), out, epochs=2, batch_size=8, lr=0.1, warmup_epochs=0.0,
              weight_decay=5e-4, verbose=0)
    return [r["loss"] for r in read_log(out + "/training_log.csv")]

single = make()
loss_single = train(single)
res = {"loss_single": loss_single}
"""

_DP_JAX = _DP_COMMON + """
import jax
res["devices"] = len(jax.devices())
with data_parallel() as dist:
    res["replicas"] = replica_count()
    model = make()
    res["loss"] = train(model)
    sharding = model.get_layer("fc1").kernel.value.sharding
    res["var_devices"] = len(sharding.device_set)
    res["replicated"] = bool(sharding.is_fully_replicated)
    res["batch_layout"] = [str(a) for a in dist.get_data_layout((8, 4, 4, 1)).axes]
    train(make(), n=15)  # a ragged, odd last batch is trimmed to a multiple of 2
    res["ragged_ok"] = True
res["replicas_after"] = replica_count()
res["max_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), model.get_weights()))
print("RESULT" + json.dumps(res))
"""

_DP_TF = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + _DP_COMMON + """
with data_parallel(["/cpu:0", "/cpu:1"]) as strategy:
    res["replicas"] = strategy.num_replicas_in_sync
    model = make()
    res["loss"] = train(model)
    kernel = model.get_layer("fc1").kernel.value
    res["var_devices"] = len({v.device for v in kernel.values})
    res["replicated"] = type(kernel).__name__ == "MirroredVariable"
    train(make(), n=15)
    res["ragged_ok"] = True
res["replicas_after"] = replica_count()
res["max_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), model.get_weights()))
print("RESULT" + json.dumps(res))
"""


def _run_two_device(backend, script):
    env = dict(os.environ, KERAS_BACKEND=backend, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def _check_data_parallel(res):
    assert res["replicas"] == 2 and res["replicas_after"] == 1
    assert res["var_devices"] == 2 and res["replicated"]
    assert res["loss"][1] < res["loss"][0]
    # Same global batch, same init: data-parallel training follows the single-device path.
    np.testing.assert_allclose(res["loss"], res["loss_single"], rtol=1e-5)
    assert res["max_diff"] < 1e-5
    assert res["ragged_ok"]


@pytest.mark.skipif(BACKEND != "jax", reason="spawns its own JAX process; run once, under KERAS_BACKEND=jax")
def test_data_parallel_jax_two_cpu_devices():
    res = _run_two_device("jax", _DP_JAX)
    assert res["devices"] == 2
    assert res["batch_layout"][0] == "batch"  # batches are split along the first axis
    _check_data_parallel(res)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="spawns its own TF process; run once, under KERAS_BACKEND=tensorflow")
def test_data_parallel_tensorflow_two_cpu_devices():
    _check_data_parallel(_run_two_device("tensorflow", _DP_TF))


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx2 avx512f", False),         # AVX2/AVX512 without bf16: emulated, slower than float32
    ("fpu avx2 avx512f avx512_bf16", True),
    ("fpu avx2 amx_bf16 amx_tile", True),
])
def test_cpu_bf16_detection_from_cpuinfo_flags(tmp_path, flags, expected):
    from hardened.recipes.train import cpu_has_native_bf16, cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(info) is expected
    assert cpu_model(info) == "Some CPU 9000"
    assert cpu_has_native_bf16(tmp_path / "missing") is None


def test_auto_precision_follows_native_bf16(monkeypatch):
    from hardened.recipes import train as train_mod

    assert train_mod.resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        train_mod.resolve_precision("fp16")
    if keras.backend.backend() != "tensorflow":
        assert train_mod.resolve_precision("auto") == "float32"
        return
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: False)
    assert train_mod.resolve_precision("auto") == "float32"
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: True)
    assert train_mod.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: None)  # unknown: keep the old default
    assert train_mod.resolve_precision("auto") == "mixed_bfloat16"
