"""A toy dataset and a tiny classifier, to exercise the evaluation quickly (tests, examples).

Nothing here is a benchmark: the images are noisy copies of ten random
prototypes, small enough that a two-second training run on a CPU reaches
near-perfect accuracy while an ε = 0.3 attack still succeeds.
"""

import numpy as np


def synthetic_images(n=2000, shape=(8, 8, 1), num_classes=10, noise=0.15, seed=0, prototype_seed=1234):
    """Noisy copies of ``num_classes`` random prototypes in [0, 1].

    Args:
        n: Number of images.
        shape: ``(H, W, C)``.
        num_classes: Number of classes (one prototype each).
        noise: Standard deviation of the Gaussian pixel noise.
        seed: Seed of the noise and the labels.
        prototype_seed: Seed of the prototypes (keep it fixed so that train
            and test sets share their classes).

    Returns:
        ``(x, y)``: float32 images ``(n, *shape)`` and int64 labels.
    """
    protos = np.random.default_rng(prototype_seed).uniform(0.2, 0.8, size=(num_classes,) + tuple(shape))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    x = protos[y] + rng.normal(0.0, noise, size=(n,) + tuple(shape))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


def tiny_classifier(input_shape=(8, 8, 1), num_classes=10, width=32, seed=0, name="toy"):
    """Conv(8) -> Dense(width) -> Dense(width) -> Dense(classes) logits; functional, GI-ready.

    The last three kernel layers are Dense, so `hardened.layers.apply_gi`
    with its default targets transforms the three fully connected layers.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(tuple(input_shape), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(width, activation="relu", name="fc1")(h)
    h = keras.layers.Dense(width, activation="relu", name="fc2")(h)
    out = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inp, out, name=name)


def train_toy(model, x, y, epochs=10, batch_size=64, learning_rate=3e-3, seed=0):
    """Train with Adam on the cross-entropy of the logits; returns the model."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return model
