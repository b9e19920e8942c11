"""Tests for hardened.data: tiny fake datasets in every supported layout.

No test touches the network: an autouse fixture points KERAS_HOME and
HARDENED_DATA_DIR at empty temporary directories and replaces the
keras.datasets loaders with ones that raise.
"""

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardened.data import DATASETS, DatasetInfo, dataset_info, load_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ----------------------------------------------------------------------------
# helpers: writers for each on-disk format
# ----------------------------------------------------------------------------
def idx_bytes(arr):
    """Serialise a uint8 array in idx format (magic 0x000008<ndim>)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def fake_mnist(n_train=6, n_test=4, seed=0):
    """Random 28x28 uint8 images with labels covering 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                  (np.arange(n_train) % 10).astype(np.uint8)),
        "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                 (9 - np.arange(n_test) % 10).astype(np.uint8)),
    }


def write_idx_set(directory, data, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in data.items():
        for stem, arr in zip(IDX_NAMES[split], (x, y)):
            raw = idx_bytes(arr)
            if gz:
                (directory / (stem + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (directory / stem).write_bytes(raw)
    return directory


def fake_cifar(per_batch=2, n_test=3, seed=1):
    rng = np.random.default_rng(seed)
    n_train = 5 * per_batch
    return {
        "train": (rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                  np.arange(n_train) % 10),
        "test": (rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                 np.arange(n_test) % 10),
    }


def cifar_batch_dict(x, y, filenames=True):
    """A batch dict shaped like the official ones (bytes keys, R/G/B planes)."""
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in y],
        b"data": x.transpose(0, 3, 1, 2).reshape(len(x), 3072),
    }
    if filenames:
        batch[b"filenames"] = [b"img_%d.png" % i for i in range(len(x))]
    return batch


def write_cifar(directory, data, filenames=True, protocol=2):
    directory.mkdir(parents=True, exist_ok=True)
    x, y = data["train"]
    per_batch = len(x) // 5
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        with open(directory / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump(cifar_batch_dict(x[sl], y[sl], filenames), f, protocol=protocol)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump(cifar_batch_dict(*data["test"], filenames), f, protocol=protocol)
    return directory


def assert_matches(pair, x_uint8, y, channels):
    """Check the loader's float output against the uint8 source arrays."""
    x_out, y_out = pair
    assert x_out.dtype == np.float32 and y_out.dtype == np.int64
    assert x_out.shape == x_uint8.shape[:3] + (channels,)
    assert y_out.shape == (len(y),)
    assert 0.0 <= x_out.min() and x_out.max() <= 1.0
    np.testing.assert_allclose(x_out, x_uint8.reshape(x_out.shape) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y_out, y)


# ----------------------------------------------------------------------------
# isolation: no real caches, no network
# ----------------------------------------------------------------------------
class DownloadAttempted(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty KERAS_HOME, no HARDENED_DATA_DIR, keras downloads that fail."""
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("HARDENED_DATA_DIR", raising=False)
    calls = []
    keras = pytest.importorskip("keras")
    for mod in ("mnist", "fashion_mnist", "cifar10"):
        def refuse(*args, _mod=mod, **kwargs):
            calls.append(_mod)
            raise DownloadAttempted("network disabled in tests")
        monkeypatch.setattr(getattr(keras.datasets, mod), "load_data", refuse)
    return {"keras_home": keras_home, "download_calls": calls}


# ----------------------------------------------------------------------------
# MNIST-like layouts
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, subdir, gz",
    [
        ("mnist", "mnist", True),
        ("mnist", "", False),              # files directly in the root, gunzipped
        ("fashion_mnist", "fashion-mnist", True),
        ("fashion-mnist", "fashion_mnist", True),
        ("fashion_mnist", "", True),
    ],
)
def test_idx_layouts(tmp_path, name, subdir, gz):
    data = fake_mnist()
    root = tmp_path / "data"
    write_idx_set(root / subdir if subdir else root, data, gz=gz)
    (train, test) = load_dataset(name, data_dir=root)
    assert_matches(train, *data["train"], channels=1)
    assert_matches(test, *data["test"], channels=1)


def test_mnist_npz_in_keras_cache(isolated):
    data = fake_mnist(n_train=7, n_test=5)
    datasets = isolated["keras_home"] / "datasets"
    datasets.mkdir()
    np.savez_compressed(datasets / "mnist.npz",
                        x_train=data["train"][0], y_train=data["train"][1],
                        x_test=data["test"][0], y_test=data["test"][1])
    (train, test) = load_dataset("mnist")  # found through $KERAS_HOME only
    assert_matches(train, *data["train"], channels=1)
    assert_matches(test, *data["test"], channels=1)
    assert isolated["download_calls"] == []


def test_fashion_keras_cache_layout_as_data_dir(tmp_path):
    # A KERAS_HOME-style root (holding datasets/) passed as data_dir.
    data = fake_mnist(seed=3)
    write_idx_set(tmp_path / "kh" / "datasets" / "fashion-mnist", data)
    train = load_dataset("fashion_mnist", data_dir=tmp_path / "kh", split="train")
    assert_matches(train, *data["train"], channels=1)


# ----------------------------------------------------------------------------
# CIFAR-10 layouts
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "relative",
    [
        "cifar-10-batches-py",
        "datasets/cifar-10-batches-py-target/cifar-10-batches-py",  # Keras >= 3.6
        "datasets/cifar-10-batches-py",                             # Keras 3.0-3.5
        "cifar10",
    ],
)
def test_cifar_layouts(tmp_path, relative):
    data = fake_cifar()
    write_cifar(tmp_path / "root" / relative, data)
    (train, test) = load_dataset("cifar-10", data_dir=tmp_path / "root")
    assert_matches(train, *data["train"], channels=3)
    assert_matches(test, *data["test"], channels=3)


def test_cifar_channel_order(tmp_path):
    # The batch rows hold the R plane, then G, then B.
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 10, 20, 30
    data = {"train": (np.repeat(x, 5, 0), np.zeros(5, int)), "test": (x, np.zeros(1, int))}
    write_cifar(tmp_path / "cifar-10-batches-py", data)
    xt, _ = load_dataset("cifar10", data_dir=tmp_path, split="test")
    np.testing.assert_allclose(xt[0, 0, 0], np.array([10, 20, 30]) / 255.0, atol=1e-6)


def test_cifar_in_keras_cache_and_protocol5(isolated):
    data = fake_cifar(per_batch=1, n_test=2)
    write_cifar(isolated["keras_home"] / "datasets" / "cifar-10-batches-py-target"
                / "cifar-10-batches-py", data, protocol=5)
    xt, yt = load_dataset("cifar10", split="test")
    assert_matches((xt, yt), *data["test"], channels=3)


def test_cifar_without_filenames_warns(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", fake_cifar(), filenames=False)
    with pytest.warns(UserWarning, match="filenames"):
        load_dataset("cifar10", data_dir=tmp_path, split="test")


def test_cifar_python2_pickles_from_make_keras_cache(tmp_path):
    # The exact Python-2 pickle form of the official batches, as written by
    # the environment's cache builder.
    if not (SHARED_DATA / "make_keras_cache.py").is_file():
        pytest.skip(f"{SHARED_DATA} not present")
    sys.path.insert(0, str(SHARED_DATA))
    try:
        import make_keras_cache
    finally:
        sys.path.remove(str(SHARED_DATA))
    data = fake_cifar()
    out = tmp_path / "cifar-10-batches-py"
    out.mkdir()
    x, y = data["train"]
    for b in range(5):
        sl = slice(2 * b, 2 * b + 2)
        (out / f"data_batch_{b + 1}").write_bytes(
            make_keras_cache.cifar_batch_bytes(x[sl], y[sl], "b"))
    (out / "test_batch").write_bytes(make_keras_cache.cifar_batch_bytes(*data["test"], "t"))
    with pytest.warns(UserWarning, match="filenames"):
        train, test = load_dataset("cifar10", data_dir=tmp_path)
    assert_matches(train, *data["train"], channels=3)
    assert_matches(test, *data["test"], channels=3)


# ----------------------------------------------------------------------------
# search order, splits, names
# ----------------------------------------------------------------------------
def test_search_order(tmp_path, monkeypatch, isolated):
    arg, env, cache = fake_mnist(seed=10), fake_mnist(seed=11), fake_mnist(seed=12)
    write_idx_set(tmp_path / "arg" / "mnist", arg)
    write_idx_set(tmp_path / "env" / "mnist", env)
    write_idx_set(isolated["keras_home"] / "datasets" / "mnist", cache)
    monkeypatch.setenv("HARDENED_DATA_DIR", str(tmp_path / "env"))
    assert_matches(load_dataset("mnist", data_dir=tmp_path / "arg", split="test"),
                   *arg["test"], channels=1)
    assert_matches(load_dataset("mnist", split="test"), *env["test"], channels=1)
    monkeypatch.delenv("HARDENED_DATA_DIR")
    assert_matches(load_dataset("mnist", split="test"), *cache["test"], channels=1)


def test_incomplete_location_is_skipped(tmp_path, monkeypatch):
    full = fake_mnist(seed=5)
    write_idx_set(tmp_path / "arg" / "mnist", {"train": full["train"]})  # no test files
    write_idx_set(tmp_path / "env" / "mnist", full)
    monkeypatch.setenv("HARDENED_DATA_DIR", str(tmp_path / "env"))
    # The train split alone is complete in data_dir ...
    assert_matches(load_dataset("mnist", data_dir=tmp_path / "arg", split="train"),
                   *full["train"], channels=1)
    # ... both splits are only complete under $HARDENED_DATA_DIR.
    _, test = load_dataset("mnist", data_dir=tmp_path / "arg")
    assert_matches(test, *full["test"], channels=1)


def test_split_argument(tmp_path):
    data = fake_mnist()
    write_idx_set(tmp_path / "mnist", data)
    x, y = load_dataset("mnist", data_dir=tmp_path, split="train")
    assert x.shape == (6, 28, 28, 1) and y.shape == (6,)
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", data_dir=tmp_path, split="validation")


def test_unknown_name_suggests_close_match():
    with pytest.raises(ValueError) as err:
        load_dataset("mnsit")
    msg = str(err.value)
    assert "Did you mean 'mnist'" in msg
    for known in ("mnist", "fashion_mnist", "cifar10"):
        assert known in msg
    with pytest.raises(ValueError, match="cifar10"):
        dataset_info("cifar100")


def test_dataset_info_registry():
    assert set(DATASETS) == {"mnist", "fashion_mnist", "cifar10"}
    info = dataset_info("Fashion-MNIST")
    assert isinstance(info, DatasetInfo) and info.name == "fashion_mnist"
    assert info.input_shape == (28, 28, 1) and info.num_classes == 10
    assert len(info.class_names) == 10 and info.class_names[9] == "Ankle boot"
    cifar = dataset_info("cifar-10")
    assert cifar.input_shape == (32, 32, 3) and cifar.class_names[0] == "airplane"
    assert "JPEG" in cifar.notes


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------
def test_missing_files_lists_every_location(tmp_path, monkeypatch, isolated):
    empty_arg, empty_env = tmp_path / "arg", tmp_path / "env"
    empty_arg.mkdir()
    empty_env.mkdir()
    monkeypatch.setenv("HARDENED_DATA_DIR", str(empty_env))
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion_mnist", data_dir=empty_arg)
    msg = str(err.value)
    assert isolated["download_calls"] == ["fashion_mnist"]  # fallback tried once
    assert "network disabled in tests" in msg
    for path in (empty_arg / "fashion-mnist", empty_env / "fashion_mnist",
                 isolated["keras_home"] / "datasets"):
        assert str(path) in msg
    assert "HARDENED_DATA_DIR" in msg and "data_dir" in msg
    assert "train-images-idx3-ubyte.gz" in msg


def test_missing_data_dir_warns(tmp_path):
    with pytest.warns(UserWarning, match="does not exist"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_dataset("cifar10", data_dir=tmp_path / "typo")


def test_corrupt_idx_magic(tmp_path):
    directory = write_idx_set(tmp_path / "mnist", fake_mnist())
    bad = directory / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + gzip.decompress(bad.read_bytes())[4:]))
    with pytest.raises(ValueError, match="magic") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("problem", ["truncated", "labels", "gzip", "count"])
def test_corrupt_idx_contents(tmp_path, problem):
    data = fake_mnist()
    directory = write_idx_set(tmp_path / "mnist", data)
    images = directory / "train-images-idx3-ubyte.gz"
    labels = directory / "train-labels-idx1-ubyte.gz"
    if problem == "truncated":
        target, raw = images, gzip.compress(idx_bytes(data["train"][0])[:-100])
    elif problem == "labels":
        target, raw = labels, gzip.compress(idx_bytes(np.full(6, 12, np.uint8)))
    elif problem == "gzip":
        target, raw = images, images.read_bytes()[:50]
    else:
        target, raw = labels, gzip.compress(idx_bytes(np.zeros(5, np.uint8)))
    target.write_bytes(raw)
    with pytest.raises(ValueError) as err:
        load_dataset("mnist", data_dir=tmp_path, split="train")
    assert str(target) in str(err.value)


def test_corrupt_npz(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match="mnist.npz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_cifar_batch(tmp_path):
    directory = write_cifar(tmp_path / "cifar-10-batches-py", fake_cifar())
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match="3072") as err:
        load_dataset("cifar10", data_dir=tmp_path, split="test")
    assert str(directory / "test_batch") in str(err.value)


class _RunsShell:
    """Pickles to a call of os.system: what a malicious batch file looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_os_system_is_refused(tmp_path):
    directory = write_cifar(tmp_path / "cifar-10-batches-py", fake_cifar())
    marker = tmp_path / "pwned"
    evil = {b"data": _RunsShell(marker), b"labels": [0]}
    with open(directory / "test_batch", "wb") as f:
        pickle.dump(evil, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to load global") as err:
        load_dataset("cifar10", data_dir=tmp_path, split="test")
    assert "system" in str(err.value) and str(directory / "test_batch") in str(err.value)
    assert not marker.exists(), "the pickled os.system call must not run"


def test_pickle_with_object_array_is_refused(tmp_path):
    directory = write_cifar(tmp_path / "cifar-10-batches-py", fake_cifar())
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"data": np.array([None, 1], dtype=object), b"labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match="non-numeric dtype"):
        load_dataset("cifar10", data_dir=tmp_path, split="test")


# ----------------------------------------------------------------------------
# Keras download fallback
# ----------------------------------------------------------------------------
def test_keras_fallback_used_when_nothing_local(monkeypatch):
    import keras

    data = fake_mnist()
    monkeypatch.setattr(
        keras.datasets.mnist, "load_data",
        lambda: ((data["train"][0], data["train"][1]), (data["test"][0], data["test"][1])))
    train, test = load_dataset("mnist")
    assert_matches(train, *data["train"], channels=1)
    assert_matches(test, *data["test"], channels=1)


# ----------------------------------------------------------------------------
# the real offline MNIST copy, if this environment has one
# ----------------------------------------------------------------------------
def test_real_mnist_from_shared_copy(tmp_path):
    script = SHARED_DATA / "make_keras_cache.py"
    if not script.is_file():
        pytest.skip(f"no offline dataset copy at {SHARED_DATA}")
    target = tmp_path / "keras_cache"
    subprocess.run([sys.executable, str(script), str(target), "--only", "mnist"],
                   check=True, capture_output=True, timeout=120)
    (x, y), (xt, yt) = load_dataset("mnist", data_dir=target)
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert abs(float(x.mean()) - 0.1307) < 5e-4
    np.testing.assert_array_equal(np.bincount(y, minlength=10)[:3], [5923, 6742, 5958])


def test_mnist_files_are_not_mistaken_for_fashion_mnist(tmp_path):
    # Both datasets use the same file names; the official label md5s tell
    # them apart when the files sit directly in the root.
    src = SHARED_DATA / "mnist"
    if not src.is_dir():
        pytest.skip(f"no offline dataset copy at {SHARED_DATA}")
    for stem in IDX_NAMES["train"] + IDX_NAMES["test"]:
        (tmp_path / (stem + ".gz")).symlink_to(src / (stem + ".gz"))
    with pytest.raises(FileNotFoundError, match="holds the official mnist files"):
        load_dataset("fashion_mnist", data_dir=tmp_path, split="test")
    xt, yt = load_dataset("mnist", data_dir=tmp_path, split="test")
    assert xt.shape == (10000, 28, 28, 1) and yt[:3].tolist() == [7, 2, 1]
