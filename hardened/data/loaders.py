"""Offline-first loaders for MNIST, Fashion-MNIST and CIFAR-10.

`load_dataset` looks for the official files on disk first and only falls back
to `keras.datasets.<name>.load_data()` (which downloads) when nothing usable is
found locally. Everything here is numpy + stdlib; Keras is imported lazily and
only for that fallback, so loading a local copy never pulls in a backend.

Search order (first complete copy wins):

1. the ``data_dir`` argument,
2. the ``HARDENED_DATA_DIR`` environment variable,
3. the Keras cache: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``).

Each of those roots may hold the files directly, in a per-dataset subfolder,
or under a ``datasets/`` folder (so a ``KERAS_HOME``-style directory works).
Layouts understood:

* MNIST / Fashion-MNIST idx files (``train-images-idx3-ubyte.gz``,
  ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``; gzipped or not) in the root or in
  ``mnist/``, ``fashion-mnist/`` or ``fashion_mnist/``.
* Keras' ``mnist.npz``.
* CIFAR-10 "python version" batches (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``) in ``cifar-10-batches-py/``, Keras 3's
  ``cifar-10-batches-py-target/cifar-10-batches-py/``, ``cifar10/`` or the
  root itself.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import importlib
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from hardened.data._unpickle import safe_unpickle

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ENV_VAR",
    "dataset_info",
    "load_dataset",
]

ENV_VAR = "HARDENED_DATA_DIR"

PathLike = Union[str, "os.PathLike[str]"]
Pair = Tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a supported dataset.

    Attributes:
        name: Canonical name accepted by `load_dataset`.
        input_shape: Shape of one image as returned (NHWC without N).
        num_classes: Number of label classes (labels are ``0..num_classes-1``).
        class_names: Human-readable class names, indexed by label.
        notes: Provenance and caveats worth knowing before reporting numbers.
        aliases: Other spellings accepted for ``name``.
    """

    name: str
    input_shape: Tuple[int, int, int]
    num_classes: int
    class_names: Tuple[str, ...]
    notes: str = ""
    aliases: Tuple[str, ...] = ()


DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        notes=(
            "LeCun et al. handwritten digits, 60000 train / 10000 test, "
            "28x28 greyscale. Train pixel mean 0.1307, std 0.3081."
        ),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        notes=(
            "Zalando Fashion-MNIST, 60000 train / 10000 test, 28x28 "
            "greyscale; same file format and names as MNIST. Train pixel "
            "mean 0.2860, std 0.3530."
        ),
        aliases=("fashion-mnist",),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        input_shape=(32, 32, 3),
        num_classes=10,
        class_names=(
            "airplane", "automobile", "bird", "cat", "deer",
            "dog", "frog", "horse", "ship", "truck",
        ),
        notes=(
            "CIFAR-10, 50000 train / 10000 test, 32x32 RGB. Reference train "
            "mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616). "
            "CAVEAT: the offline copy the zoo was trained and evaluated on is "
            "NOT lossless: "
            "its pixels are decoded JPEG re-encodings (about quality 75, 4:2:0 "
            "chroma), off by up to ~23 grey levels with lower per-channel std, "
            "and its test set is in class round-robin order "
            "(y_test == [0..9] * 1000), not the official order. Its batches "
            "lack the official 'filenames' key, which load_dataset uses to "
            "warn. Treat accuracy and robustness numbers on that copy as "
            "approximate."
        ),
        aliases=("cifar-10",),
    ),
}

# Every accepted spelling -> canonical name.
_ALIASES = {alias: info.name for info in DATASETS.values()
            for alias in (info.name,) + info.aliases}


def canonical_dataset(name: str, strict: bool = True) -> Optional[str]:
    """The canonical dataset name of ``name`` or an alias (``"Fashion-MNIST"`` -> ``"fashion_mnist"``).

    The package's one table of dataset spellings (`DATASETS` and their ``aliases``).

    Args:
        name: A dataset name or alias, any case.
        strict: Raise on an unknown name (``False``: return its stripped lower-case spelling).

    Raises:
        ValueError / TypeError: unknown name (strict) or not a string.
    """
    if not strict:
        key = str(name).strip().lower()
        return _ALIASES.get(key, key)
    return _canonical_name(name)


def _canonical_name(name: str) -> str:
    """Resolve ``name`` (or an alias) to a key of `DATASETS`.

    Raises:
        ValueError: For an unknown name, listing the known names and the
            closest match.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, list(_ALIASES), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}. Known datasets: "
        f"{', '.join(sorted(DATASETS))} (aliases: "
        f"{', '.join(sorted(set(_ALIASES) - set(DATASETS)))}).{hint}"
    )


def dataset_info(name: str) -> DatasetInfo:
    """Return the `DatasetInfo` for ``name`` (aliases accepted).

    Args:
        name: Dataset name, e.g. ``"cifar10"`` or ``"fashion-mnist"``.

    Returns:
        The registry entry.

    Raises:
        ValueError: If the name is unknown (the message suggests a close match).
    """
    return DATASETS[_canonical_name(name)]


# ----------------------------------------------------------------------------
# File readers (all validate and raise ValueError naming the file)
# ----------------------------------------------------------------------------
def _corrupt(path: Path, problem: str) -> ValueError:
    return ValueError(
        f"Corrupt or unexpected dataset file {path}: {problem}. Delete or "
        "replace it with the official file (re-download or re-copy it)."
    )


def _read_maybe_gzip(path: Path) -> bytes:
    """Return the file's bytes, gunzipping when it starts with the gzip magic."""
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":  # decide by content, not by the file name
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, f"cannot decompress ({err})") from err


def _parse_idx(raw: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte idx file (magic 0x00000801 / 0x00000803)."""
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"{len(raw)} bytes is too short for an idx header")
    zero, type_code, file_ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code != 0x08 or file_ndim != ndim:
        raise _corrupt(
            path,
            f"idx magic number is 0x{raw[:4].hex()}, expected 0x000008{ndim:02x} "
            f"(unsigned bytes, {ndim}-D)",
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise _corrupt(
            path, f"header says shape {dims} ({expected} bytes) but the file "
                  f"has {len(raw)} bytes (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _check_pair(x: np.ndarray, y: np.ndarray, info: DatasetInfo,
                where: str, labels_where: Optional[str] = None) -> None:
    """Validate raw uint8 images (N,H,W[,C]) and labels against ``info``.

    Args:
        x: Images as read from disk.
        y: Labels as read from disk.
        info: Expected shapes and number of classes.
        where: File named in errors about the images.
        labels_where: File named in errors about the labels (default: where).
    """
    labels_where = labels_where or where
    h, w, c = info.input_shape
    want = (h, w) if c == 1 else (h, w, c)
    if x.ndim not in (3, 4) or tuple(x.shape[1:len(want) + 1]) != want or \
            (x.ndim == 4 and x.shape[3] != c):
        raise _corrupt(where, f"images have shape {x.shape}, expected "
                              f"(N, {', '.join(map(str, want))})")
    if y.ndim != 1 or len(y) != len(x):
        raise _corrupt(where, f"{len(x)} images but labels of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= info.num_classes):
        raise _corrupt(
            labels_where, f"labels span {int(y.min())}..{int(y.max())}, expected "
                   f"0..{info.num_classes - 1}")


# md5 of the uncompressed official label files: lets us tell MNIST from
# Fashion-MNIST, whose files share the same names.
_LABEL_MD5 = {
    "a25bea736e30d166cdddb491f175f624": "mnist",          # train-labels
    "27ae3e4e09519cfbb04c329615203637": "mnist",          # t10k-labels
    "9018921c3c673c538a1fc5bad174d6f9": "fashion_mnist",  # train-labels
    "15d484375f8d13e6eb1aabb0c3f46965": "fashion_mnist",  # t10k-labels
}

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_file(directory: Path, stem: str) -> Optional[Path]:
    # Official gz names, the gunzipped names, and the "train-images.idx3-ubyte"
    # spelling some mirrors use.
    dotted = stem.replace("-idx", ".idx")
    for fname in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (directory / fname).is_file():
            return directory / fname
    return None


# A probe inspects one location and returns (loader, note): a loader
# ``split -> (x_uint8, y)`` when the location is usable, else a note saying
# why not (shown in the FileNotFoundError).
Loader = Callable[[str], Pair]
Probe = Tuple[Optional[Loader], str]


def _probe_idx(directory: Path, info: DatasetInfo, splits: Sequence[str]) -> Probe:
    if not directory.is_dir():
        return None, "no such directory"
    files, missing = {}, []
    for split in splits:
        for stem in _IDX_STEMS[split]:
            found = _idx_file(directory, stem)
            files[stem] = found
            if found is None:
                missing.append(stem + "[.gz]")
    if missing:
        present = any(files.values())
        return None, ("incomplete, missing " if present else "no idx files, wanted ") \
            + ", ".join(missing)
    # Same file names for both MNIST-like datasets: refuse the other one.
    labels_path = files[_IDX_STEMS[splits[0]][1]]
    owner = _LABEL_MD5.get(hashlib.md5(_read_maybe_gzip(labels_path)).hexdigest())
    if owner is not None and owner != info.name:
        return None, f"holds the official {owner} files, not {info.name}; skipped"

    def load(split: str) -> Pair:
        img_stem, lbl_stem = _IDX_STEMS[split]
        x = _parse_idx(_read_maybe_gzip(files[img_stem]), files[img_stem], 3)
        y = _parse_idx(_read_maybe_gzip(files[lbl_stem]), files[lbl_stem], 1)
        if len(x) != len(y):
            raise _corrupt(files[img_stem], f"{len(x)} images but {files[lbl_stem]} "
                                            f"has {len(y)} labels")
        _check_pair(x, y, info, str(files[img_stem]), str(files[lbl_stem]))
        return x, y

    return load, "ok"


def _probe_npz(path: Path, info: DatasetInfo, splits: Sequence[str]) -> Probe:
    if not path.is_file():
        return None, "no such file"

    def load(split: str) -> Pair:
        try:
            # allow_pickle=False: an npz can smuggle pickles in object arrays.
            with np.load(path, allow_pickle=False) as f:
                keys = (f"x_{split}", f"y_{split}")
                absent = [k for k in keys if k not in f.files]
                if absent:
                    raise _corrupt(path, f"missing arrays {absent}; found {f.files}, "
                                         "expected x_train, y_train, x_test, y_test")
                x, y = f[keys[0]], f[keys[1]]
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise _corrupt(path, f"not a readable .npz archive ({err})") from err
        except ValueError as err:
            if "Corrupt or unexpected" in str(err):
                raise
            raise _corrupt(path, str(err)) from err
        if x.dtype != np.uint8 or not np.issubdtype(y.dtype, np.integer):
            raise _corrupt(path, f"dtypes {x.dtype}/{y.dtype}, expected uint8 "
                                 "images and integer labels")
        if y.ndim == 2 and y.shape[1] == 1:  # tolerate (N, 1) label columns
            y = y.reshape(-1)
        _check_pair(x, y, info, str(path))
        return x, y

    return load, "ok"


_CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"]}


def _read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Return (x uint8 (N,32,32,3), labels, has_filenames) of one batch file."""
    try:
        batch = safe_unpickle(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as err:
        raise _corrupt(path, f"not a plain CIFAR-10 python batch ({err})") from err
    if not isinstance(batch, dict):
        raise _corrupt(path, f"unpickled a {type(batch).__name__}, expected a dict")
    # Python 2 pickles read with encoding="bytes" have bytes keys.
    batch = {k.decode("latin-1") if isinstance(k, bytes) else k: v
             for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise _corrupt(path, f"keys {sorted(map(str, batch))}, expected 'data' and 'labels'")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or \
            data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) \
            else type(data).__name__
        raise _corrupt(path, f"'data' is {desc}, expected uint8 array (N, 3072)")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise _corrupt(path, f"'labels' is not a list of integers ({err})") from err
    # Rows are the R plane, then G, then B (each 32x32, row-major).
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, labels, "filenames" in batch


def _probe_cifar(directory: Path, info: DatasetInfo, splits: Sequence[str]) -> Probe:
    if not directory.is_dir():
        return None, "no such directory"
    wanted = [n for s in splits for n in _CIFAR_FILES[s]]
    missing = [n for n in wanted if not (directory / n).is_file()]
    if missing:
        present = len(missing) < len(wanted)
        return None, ("incomplete, missing " if present else "no CIFAR batches, wanted ") \
            + ", ".join(missing)

    def load(split: str) -> Pair:
        xs, ys, official = [], [], True
        for fname in _CIFAR_FILES[split]:
            x, y, has_names = _read_cifar_batch(directory / fname)
            _check_pair(x, y, info, str(directory / fname))
            xs.append(x)
            ys.append(y)
            official &= has_names
        if not official:
            warnings.warn(
                f"CIFAR-10 batches in {directory} lack the official 'filenames' "
                "key: this is a rebuilt copy (the one provided in this "
                "environment is decoded from JPEGs, with a non-official test "
                "order). Treat results as approximate; see "
                "dataset_info('cifar10').notes.", UserWarning, stacklevel=3)
        return np.concatenate(xs), np.concatenate(ys)

    return load, "ok"


# ----------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------
def _keras_home() -> Path:
    """Mirror Keras' own choice of cache directory."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    base = Path.home()
    # Keras silently uses /tmp/.keras when the home directory is read-only.
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def _roots(data_dir: Optional[PathLike]) -> list:
    """(label, path) of every root to search, in priority order."""
    roots = []
    if data_dir is not None:
        roots.append(("data_dir argument", Path(data_dir).expanduser()))
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append((f"${ENV_VAR}", Path(env).expanduser()))
    roots.append(("Keras cache", _keras_home() / "datasets"))
    return roots


def _locations(name: str, base: Path) -> Iterator[Tuple[Path, Callable]]:
    """Candidate locations for ``name`` inside one base directory."""
    if name == "mnist":
        yield base / "mnist", _probe_idx
        yield base, _probe_idx
        yield base / "mnist.npz", _probe_npz
        yield base / "mnist" / "mnist.npz", _probe_npz
    elif name == "fashion_mnist":
        yield base / "fashion-mnist", _probe_idx
        yield base / "fashion_mnist", _probe_idx
        yield base, _probe_idx
    else:
        yield base / "cifar-10-batches-py-target" / "cifar-10-batches-py", _probe_cifar
        yield base / "cifar-10-batches-py", _probe_cifar
        yield base / "cifar10" / "cifar-10-batches-py", _probe_cifar
        yield base / "cifar10", _probe_cifar
        yield base, _probe_cifar


def _find_local(info: DatasetInfo, data_dir, splits) -> Tuple[Optional[Loader], list]:
    """Return (loader or None, lines describing every place looked in)."""
    looked = []
    for label, root in _roots(data_dir):
        if not root.is_dir():
            why = "not a directory" if root.exists() else "does not exist"
            looked.append(f"{root} ({label}): {why}")
            if label == "data_dir argument":
                # Most likely a typo; say so instead of silently using the
                # next root.
                warnings.warn(f"data_dir {str(root)!r} {why}; searching "
                              f"${ENV_VAR} and the Keras cache instead.",
                              UserWarning, stacklevel=3)
            continue
        bases = [root]
        # A KERAS_HOME-style root keeps its files under datasets/.
        if (root / "datasets").is_dir() and root.name != "datasets":
            bases.append(root / "datasets")
        for base in bases:
            for path, probe in _locations(info.name, base):
                loader, note = probe(path, info, splits)
                if loader is not None:
                    return loader, looked
                looked.append(f"{path} ({label}): {note}")
    return None, looked


def _download_with_keras(name: str) -> Tuple[Optional[Loader], str]:
    """Fall back to ``keras.datasets.<name>.load_data()`` (may download)."""
    try:
        keras = importlib.import_module("keras")
        loaded = getattr(keras.datasets, name).load_data()
    except Exception as err:  # noqa: BLE001 - any failure means "not available"
        return None, f"{type(err).__name__}: {err}"
    (x_train, y_train), (x_test, y_test) = loaded
    arrays = {"train": (np.asarray(x_train), np.asarray(y_train).reshape(-1)),
              "test": (np.asarray(x_test), np.asarray(y_test).reshape(-1))}
    return arrays.__getitem__, "ok"


def _to_float(x: np.ndarray, y: np.ndarray) -> Pair:
    """uint8 NHW[C] -> float32 NHWC in [0, 1]; labels -> int64 1-D."""
    out = x.astype(np.float32)
    out /= 255.0
    if out.ndim == 3:
        out = out[..., np.newaxis]
    return out, np.asarray(y, dtype=np.int64).reshape(-1)


def _help_text(name: str) -> str:
    if name == "cifar10":
        where = ("the official CIFAR-10 python batches (extracted "
                 "cifar-10-python.tar.gz): DIR/cifar-10-batches-py/"
                 "{data_batch_1..data_batch_5,test_batch}")
    else:
        sub = "mnist" if name == "mnist" else "fashion-mnist"
        where = (f"the four official idx files: DIR/{sub}/"
                 "{train-images-idx3-ubyte.gz,train-labels-idx1-ubyte.gz,"
                 "t10k-images-idx3-ubyte.gz,t10k-labels-idx1-ubyte.gz}")
        if name == "mnist":
            where += " (or Keras' DIR/mnist.npz)"
    return (f"To use an offline copy, put {where} and then set {ENV_VAR}=DIR "
            f"or call load_dataset({name!r}, data_dir=DIR).")


def load_dataset(name: str, data_dir: Optional[PathLike] = None,
                 split: Optional[str] = None):
    """Load MNIST, Fashion-MNIST or CIFAR-10 as float32 NHWC arrays.

    Local copies are preferred (see the module docstring for the search
    order and accepted layouts); only when none is found does this call
    ``keras.datasets.<name>.load_data()``, which downloads into the Keras
    cache.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` (or ``"fashion-mnist"``),
            ``"cifar10"`` (or ``"cifar-10"``). Case-insensitive.
        data_dir: Directory searched first. Takes precedence over the
            ``HARDENED_DATA_DIR`` environment variable and the Keras cache.
        split: ``None`` for both splits, or ``"train"`` / ``"test"`` for one.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, or a single ``(x, y)``
        pair when ``split`` is given. ``x`` is float32 in [0, 1] with shape
        ``(N, H, W, C)`` (MNIST-like data gets ``C == 1``); ``y`` is int64
        with shape ``(N,)``.

    Raises:
        ValueError: Unknown ``name`` or ``split``, or a local file that is
            corrupt (the message names the file).
        FileNotFoundError: Nothing found locally and the Keras download
            failed; the message lists every location searched.

    Example:
        >>> (x, y), (xt, yt) = load_dataset("mnist", data_dir="/data")
        >>> x.shape, x.dtype, y.dtype
        ((60000, 28, 28, 1), dtype('float32'), dtype('int64'))
    """
    info = dataset_info(name)
    if split is None:
        splits = ("train", "test")
    elif split in ("train", "test"):
        splits = (split,)
    else:
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")

    loader, looked = _find_local(info, data_dir, splits)
    if loader is None:
        loader, failure = _download_with_keras(info.name)
        if loader is None:
            places = "\n".join(f"  - {line}" for line in looked)
            raise FileNotFoundError(
                f"Could not find {info.name} locally and downloading it with "
                f"keras.datasets.{info.name}.load_data() failed ({failure}).\n"
                f"Looked in:\n{places}\n{_help_text(info.name)}"
            )
    # Local loaders validated their files already; Keras output is trusted.
    pairs = []
    for s in splits:  # a plain loop keeps warnings' stacklevel right
        pairs.append(_to_float(*loader(s)))
    return pairs[0] if split is not None else tuple(pairs)
