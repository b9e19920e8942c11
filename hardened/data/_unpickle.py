"""Restricted unpickling of the CIFAR-10 python batches: plain data only, no code execution.

The official CIFAR-10 batches are Python 2 pickles whose "data" entry is a
pickled numpy array. Rebuilding it needs three numpy globals, and pickles
re-written by Python 3 with protocol 2 also reference `_codecs.encode` and
`bytes` for every bytes object. Rather than hand those real callables to the
unpickler (numpy's `__setstate__` would then run on untrusted state), each
allowed name maps to a tiny stand-in that only records or checks plain
values; arrays are built afterwards with `np.frombuffer`. Every other global
(os.system, builtins.eval, ...) is refused, so a tampered file cannot run
code.
"""

import pickle
from pathlib import Path

import numpy as np


class _DtypeStub:
    """Stand-in for ``numpy.dtype(obj, align, copy)`` + its BUILD state."""

    def __init__(self, obj, align=False, copy=True):
        if not isinstance(obj, (str, bytes)):
            raise pickle.UnpicklingError(f"dtype spec must be a string, got {obj!r}")
        spec = obj.decode("ascii") if isinstance(obj, bytes) else obj
        try:
            dtype = np.dtype(spec)
        except TypeError as err:
            raise pickle.UnpicklingError(f"bad dtype {spec!r}") from err
        # Only plain numbers: object/void/string dtypes are how array pickles
        # smuggle arbitrary content.
        if dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"refusing non-numeric dtype {spec!r}")
        self.dtype = dtype

    def __setstate__(self, state):
        # Plain dtypes pickle as (3, endian, None, None, None, -1, -1, 0).
        if (not isinstance(state, tuple) or len(state) != 8 or state[0] != 3
                or state[2:5] != (None, None, None)):
            raise pickle.UnpicklingError(f"unsupported dtype state {state!r}")
        endian = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        if endian in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(endian)
        elif endian not in ("|", "="):
            raise pickle.UnpicklingError(f"bad byte order {endian!r}")


class _NdarrayType:
    """Marker returned for the global ``numpy.ndarray`` (never instantiated)."""


class _ArrayStub:
    """Stand-in for ``numpy ... _reconstruct(ndarray, shape, typecode)``."""

    def __init__(self, subtype, shape=None, typecode=None):
        if subtype is not _NdarrayType:
            raise pickle.UnpicklingError("only plain numpy.ndarray may be rebuilt")
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("unsupported ndarray state")
        # Version 1 states carry a leading version number.
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _DtypeStub) or not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("ndarray state must hold a numeric dtype and raw bytes")
        if (not isinstance(shape, tuple)
                or not all(isinstance(d, int) and d >= 0 for d in shape)):
            raise pickle.UnpicklingError(f"bad ndarray shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(
                f"ndarray of shape {shape} needs {count * dtype.dtype.itemsize} "
                f"bytes, found {len(raw)}")
        self.array = np.frombuffer(bytes(raw), dtype.dtype, count).reshape(
            shape, order="F" if fortran else "C")


def _frombuffer(buffer, dtype, shape, order):
    """Stand-in for numpy's ``_frombuffer`` (ndarray pickles, protocol >= 5)."""
    if not isinstance(dtype, _DtypeStub) or \
            not isinstance(buffer, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError("ndarray must hold a numeric dtype and raw bytes")
    stub = _ArrayStub(_NdarrayType)
    stub.__setstate__((shape, dtype, order == "F", bytes(buffer)))
    return stub


def _latin1_encode(text, encoding="utf-8"):
    """Stand-in for ``_codecs.encode`` as Python 3 protocol-2 pickles use it."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin-1")


def _empty_bytes(*args):
    """Stand-in for ``bytes()`` (how protocol 2 spells an empty bytes object)."""
    if args:
        raise pickle.UnpicklingError("only bytes() with no arguments is allowed")
    return b""


_PICKLE_STANDINS = {
    ("numpy", "dtype"): _DtypeStub,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,   # numpy < 2 writers
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,  # numpy >= 2 writers
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no real global at all (only inert stand-ins)."""

    def find_class(self, module, name):
        try:
            return _PICKLE_STANDINS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': CIFAR-10 batches "
                "only contain plain data (dicts, lists, bytes, numeric arrays)"
            ) from None


def _materialize(obj):
    """Replace `_ArrayStub`s by their arrays, recursively."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("ndarray without state")
        return obj.array
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    if isinstance(obj, _DtypeStub) or callable(obj):
        raise pickle.UnpicklingError("stray dtype/type/function object in pickle")
    return obj


def safe_unpickle(path: Path):
    """Unpickle ``path`` with `_RestrictedUnpickler` (``encoding="bytes"``)."""
    with open(path, "rb") as f:
        return _materialize(_RestrictedUnpickler(f, encoding="bytes").load())
