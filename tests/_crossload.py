"""Subprocess half of the cross-backend test: load every checkpoint in DIR, predict, save.

Usage: KERAS_BACKEND=jax python tests/_crossload.py DIR
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hardened  # noqa: E402
from hardened.layers import set_randomness  # noqa: E402


def main(root):
    root = Path(root)
    backend = keras.backend.backend()
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        model = hardened.load_pretrained(case)
        set_randomness(model, False)
        x = np.load(case.parent / f"{case.name}.x.npy")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        np.save(case.parent / f"{case.name}.{backend}.npy", y)
    print("ok", backend)


if __name__ == "__main__":
    main(sys.argv[1])
