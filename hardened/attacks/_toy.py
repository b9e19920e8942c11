"""A toy problem for attack sanity checks, tests and benchmarks (no data files, any backend).

Ten random 8x8x1 prototypes plus Gaussian noise, and a 64-32-32-10 ReLU MLP
trained on them in numpy (full-batch Adam; `np.einsum`, so no BLAS thread
pool to fight over on a busy machine). The same seed gives the same weights
on every backend.
"""

import keras
import numpy as np


def blobs(n, seed=0, noise=0.15):
    """``(x, y)``: ``n`` images ``(n, 8, 8, 1)`` in [0, 1] and labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0.1, 0.9, size=(10, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, n)
    x = np.clip(protos[y] + rng.normal(0, noise, size=(n, 8, 8, 1)), 0, 1).astype("float32")
    return x, y


def train_mlp(x, y, hidden=(32, 32), classes=10, iters=150, lr=0.01, seed=0):
    """Weights (Keras `set_weights` order) of a ReLU MLP trained with softmax CE."""
    rng = np.random.default_rng(seed)
    X = x.reshape(len(x), -1).astype(np.float32)
    sizes = [X.shape[1], *hidden, classes]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    Y = np.eye(classes, dtype=np.float32)[y]

    def mm(a, b):
        return np.einsum("ij,jk->ik", a, b)

    for t in range(1, iters + 1):
        acts = [X]
        for i in range(0, len(params), 2):
            z = mm(acts[-1], params[i]) + params[i + 1]
            acts.append(np.maximum(z, 0) if i < len(params) - 2 else z)
        z = acts[-1]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d = (p - Y) / len(X)
        grads = [None] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i], grads[i + 1] = mm(acts[i // 2].T, d), d.sum(0)
            if i:
                d = mm(d, params[i].T) * (acts[i // 2] > 0)
        for j, g in enumerate(grads):
            m[j] = 0.9 * m[j] + 0.1 * g
            v[j] = 0.999 * v[j] + 0.001 * g * g
            params[j] -= lr * (m[j] / (1 - 0.9 ** t)) / (np.sqrt(v[j] / (1 - 0.999 ** t)) + 1e-8)
    return params


def mlp(pre=None, noise=None, hidden=(32, 32), classes=10, name="mlp"):
    """The toy architecture: ``pre`` applied to the input, ``noise`` after ``fc1``."""
    inp = keras.Input((8, 8, 1), name="input")
    h = pre(inp) if pre is not None else inp
    h = keras.layers.Flatten(name="flatten")(h)
    # Zero initialisers: weights are set from numpy anyway (and JAX would compile its RNG).
    for i, width in enumerate(hidden, start=1):
        h = keras.layers.Dense(width, activation="relu", kernel_initializer="zeros", name=f"fc{i}")(h)
        if i == 1 and noise is not None:
            h = noise(h)
    out = keras.layers.Dense(classes, kernel_initializer="zeros", name="logits")(h)
    return keras.Model(inp, out, name=name)


def toy_problem(n_train=500, n_test=400, seed=0):
    """``(model, (x_train, y_train), (x_test, y_test), weights)`` with a trained toy MLP."""
    x, y = blobs(n_train + n_test, seed=seed)
    weights = train_mlp(x[:n_train], y[:n_train], seed=seed)
    model = mlp()
    model.set_weights(weights)
    return model, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), weights
