import os

# Quieter TensorFlow logs; tests never need a GPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests run many small, different graphs: on JAX, XLA's optimisation passes cost
# far more than the computations (measured ~10x on compile). Subprocesses
# (cross-backend test) inherit it through the environment.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)
