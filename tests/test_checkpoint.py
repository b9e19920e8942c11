"""Checkpoint folders: round trip, integrity checks and clear errors on bad input."""

import json

import keras
import numpy as np
import pytest

import hardened
from hardened.layers import HashedDense
from hardened.zoo.checkpoint import CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME, IntegrityError, sha256_file


def _model():
    inp = keras.Input((6, 6, 1), name="image")
    h = keras.layers.Conv2D(3, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    h = HashedDense(16, compression=1 / 4, activation="relu", name="fc1")(h)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(h), name="tiny")


def _x():
    return np.random.default_rng(0).random((3, 6, 6, 1)).astype("float32")


@pytest.fixture
def ckpt(tmp_path):
    return hardened.save_pretrained(_model(), tmp_path / "ckpt", metadata={"dataset": "unit-test"})


def test_folder_layout_and_metadata(ckpt):
    assert sorted(p.name for p in ckpt.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME])
    meta = json.loads((ckpt / METADATA_NAME).read_text())
    assert meta["dataset"] == "unit-test"
    assert meta["files"][WEIGHTS_NAME]["sha256"] == sha256_file(ckpt / WEIGHTS_NAME)
    assert meta["versions"]["keras"] == keras.__version__
    assert meta["input_shape"] == [6, 6, 1] and meta["output_shape"] == [10]
    # No pickle anywhere: safetensors header is JSON.
    raw = (ckpt / WEIGHTS_NAME).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert set(header) - {"__metadata__"} == {"conv1/kernel", "conv1/bias", "fc1/kernel", "fc1/bias",
                                              "logits/kernel", "logits/bias"}
    assert header["fc1/kernel"]["shape"] == [4 * 4 * 3 * 16 // 4]


def test_round_trip_equal_predictions(tmp_path):
    model = _model()
    hardened.save_pretrained(model, tmp_path / "a")
    loaded = hardened.load_pretrained(tmp_path / "a")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(_x())), keras.ops.convert_to_numpy(model(_x())),
                               rtol=1e-6, atol=1e-6)
    assert loaded.hardened_metadata["model_name"] == "tiny"


def _flip_byte(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_weights_are_refused(ckpt):
    _flip_byte(ckpt / WEIGHTS_NAME)
    with pytest.raises(IntegrityError, match="sha256"):
        hardened.load_pretrained(ckpt)


def test_tampered_config_is_refused(ckpt):
    cfg = (ckpt / CONFIG_NAME).read_text().replace('"relu"', '"tanh"', 1)
    (ckpt / CONFIG_NAME).write_text(cfg)
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        hardened.load_pretrained(ckpt)


def test_registry_checksum_mismatch_is_refused(ckpt):
    with pytest.raises(IntegrityError, match="registry expects"):
        hardened.load_pretrained(ckpt, expected_weights_sha256="0" * 64)


@pytest.mark.parametrize("name", [CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME])
def test_missing_file_is_a_clear_error(ckpt, name):
    (ckpt / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.split(".")[0]):
        hardened.load_pretrained(ckpt)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hardened.load_pretrained(tmp_path / "nope")


def _rewrite(ckpt, name, text_or_bytes):
    path = ckpt / name
    if isinstance(text_or_bytes, str):
        path.write_text(text_or_bytes)
    else:
        path.write_bytes(text_or_bytes)
    meta = json.loads((ckpt / METADATA_NAME).read_text())
    meta["files"][name]["sha256"] = sha256_file(path)  # a consistent but bad checkpoint
    (ckpt / METADATA_NAME).write_text(json.dumps(meta))


def test_unregistered_layer_in_config_is_refused(ckpt):
    cfg = (ckpt / CONFIG_NAME).read_text().replace('"hardened>HashedDense"', '"evil>Backdoor"')
    _rewrite(ckpt, CONFIG_NAME, cfg)
    with pytest.raises(ValueError, match="evil>Backdoor.*not a registered"):
        hardened.load_pretrained(ckpt)


def test_lambda_layer_in_config_is_refused(tmp_path):
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2, name="lam")(inp))
    hardened.save_pretrained(model, tmp_path / "lam")
    with pytest.raises(ValueError):
        hardened.load_pretrained(tmp_path / "lam")


def test_corrupt_weights_file_is_a_clear_error(ckpt):
    _rewrite(ckpt, WEIGHTS_NAME, b"not a safetensors file at all")
    with pytest.raises(ValueError, match="safetensors"):
        hardened.load_pretrained(ckpt)


def test_weights_that_do_not_match_config(ckpt, tmp_path):
    other = _model()
    inp = keras.Input((6, 6, 1), name="image")
    small = keras.Model(inp, keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(inp)))
    hardened.save_pretrained(small, tmp_path / "small")
    _rewrite(ckpt, WEIGHTS_NAME, (tmp_path / "small" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match="does not match its config"):
        hardened.load_pretrained(ckpt)
    del other


def test_duplicate_checkpoint_keys_are_refused(tmp_path):
    inp = keras.Input((4,))

    class Twins(keras.layers.Layer):  # two children with one name: keys would clash
        def __init__(self, **kw):
            super().__init__(**kw)
            self.a, self.b = keras.layers.Dense(2, name="d"), keras.layers.Dense(2, name="d")

        def call(self, x):
            return self.a(x) + self.b(x)

    with pytest.raises(ValueError, match="distinct"):
        hardened.save_pretrained(keras.Model(inp, Twins(name="twins")(inp)), tmp_path / "dup")


# ---------------------------------------------------------------- input validation
@pytest.mark.parametrize(
    "x, exc, match",
    [
        (np.zeros((2, 6, 6), "float32"), ValueError, r"\(N, H, W, C\)"),
        (np.zeros((2, 5, 6, 1), "float32"), ValueError, "expects"),
        (np.zeros((2, 6, 6, 1), "uint8"), TypeError, "/ 255"),
        (np.full((2, 6, 6, 1), np.nan, "float32"), ValueError, "NaN"),
        (np.full((2, 6, 6, 1), 255.0, "float32"), ValueError, r"\[0, 1\]"),
        (np.array([["a"]]), TypeError, "numeric"),
    ],
)
def test_check_images_errors(x, exc, match):
    with pytest.raises(exc, match=match):
        hardened.check_images(x, (6, 6, 1))


def test_check_images_accepts_valid_input():
    out = hardened.check_images(_x().astype("float64"), (6, 6, 1))
    assert out.dtype == np.float32
