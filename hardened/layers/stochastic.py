"""Stochastic defenses that stay random at inference (the baselines of HRS).

Every layer here draws from a `keras.random.SeedGenerator`, so a run is
reproducible from its seed, and has a ``randomness`` switch: with it off the
layer is deterministic (the "fixed randomness" attack setting of seed 004,
where the random module is removed). Use `set_randomness` on a whole model.
"""

import math

import keras
from keras import ops


class RandomizedLayer(keras.layers.Layer):
    """Base class: a layer that is random at inference unless switched off."""

    is_randomized = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.randomness = True

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package="hardened")
class DefensiveDropout(RandomizedLayer):
    """Dropout that is also active at inference (Wang et al., 2018).

    Args:
        rate: Fraction of units dropped, in [0, 1).
        seed: Seed of the dropout masks.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 <= float(rate) < 1:
            raise ValueError(f"DefensiveDropout: rate must be in [0, 1), got {rate!r}.")
        self.rate = float(rate)

    def call(self, inputs):
        if not self.randomness or self.rate == 0:
            return inputs
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="hardened")
class GaussianNoiseInjection(RandomizedLayer):
    """Adds N(0, stddev²) noise in training and at test time (Liu et al., 2017).

    Args:
        stddev: Standard deviation of the noise (in input units).
        seed: Seed of the noise.
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if float(stddev) < 0:
            raise ValueError(f"GaussianNoiseInjection: stddev must be >= 0, got {stddev!r}.")
        self.stddev = float(stddev)

    def call(self, inputs):
        if not self.randomness or self.stddev == 0:
            return inputs
        noise = keras.random.normal(ops.shape(inputs), stddev=self.stddev, dtype=inputs.dtype,
                                    seed=self.seed_generator)
        return inputs + noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="hardened")
class StochasticActivationPruning(RandomizedLayer):
    """Stochastic activation pruning (Dhillon et al., 2018).

    Per example, ``r = ratio * n`` indices are drawn with replacement with
    probability ``p_i = |h_i| / sum_j |h_j|``; activations never drawn are set
    to zero and the survivors are scaled by ``1 / (1 - (1 - p_i)^r)`` so that
    the output is unbiased.

    Args:
        ratio: Number of draws as a fraction of the number of features.
        seed: Seed of the draws.
    """

    def __init__(self, ratio=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if float(ratio) <= 0:
            raise ValueError(f"StochasticActivationPruning: ratio must be > 0, got {ratio!r}.")
        self.ratio = float(ratio)

    def call(self, inputs):
        if not self.randomness:
            return inputs
        shape = ops.shape(inputs)
        # The feature count from the static shape: reshaping with a dynamic batch (TF's traced predict) loses it.
        n = math.prod(int(d) for d in inputs.shape[1:])
        flat = ops.reshape(inputs, (-1, n))
        draws = max(1, int(round(self.ratio * n)))
        x = ops.cast(flat, "float32")
        mag = ops.abs(x)
        total = ops.sum(mag, axis=-1, keepdims=True)
        p = mag / ops.maximum(total, 1e-12)
        logits = ops.log(ops.maximum(p, 1e-30))
        samples = ops.cast(keras.random.categorical(logits, draws, seed=self.seed_generator), "int32")
        # kept[b, i] = 1 where index i was drawn for example b: a scatter, O(batch * (n + draws)) memory (a
        # one-hot count would need batch * draws * n, 1.9 GB per image after a 26x26x32 conv).
        rows = ops.zeros_like(samples) + ops.expand_dims(ops.arange(ops.shape(samples)[0], dtype="int32"), -1)
        where = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(samples, (-1,))], axis=-1)
        drawn = ops.scatter_update(ops.zeros_like(x), where, ops.ones((ops.shape(where)[0],), dtype="float32"))
        kept = ops.stop_gradient(drawn) * ops.cast(mag > 0, "float32")
        keep_prob = 1.0 - ops.power(1.0 - p, float(draws))
        out = x * kept / ops.maximum(keep_prob, 1e-12)
        return ops.reshape(ops.cast(out, inputs.dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


#: Where `sap_view` puts SAP by default: after ``fc1`` (between FC1 and FC2), like the ``cwcnn-sap-*`` recipes
#: (seed 004, section 6.1), so a view has the recipe's architecture, layer names included (``fc1_sap``).
SAP_VIEW_LAYERS = ("fc1",)


def sap_view(model, ratio=1.0, seed=0, layers=None):
    """A training-free SAP defense: ``model`` with a `StochasticActivationPruning` after some activations.

    Each target layer's output (its activation: the builders fuse ReLU into
    ``conv*`` / ``fc*``) goes through a new ``StochasticActivationPruning``
    named ``<layer>_sap``; every other layer is the base's own object, so the
    view shares the base's weights (no copy; same names, so a checkpoint's
    weights map by name) and the base is unchanged.

    With randomness on, each call keeps a random subset of the activations
    (drawn in proportion to their magnitude) and rescales the survivors by
    ``1 / P(kept)``: unbiased, so the logits are the base's in expectation up
    to the later non-linearities. With randomness off (`set_randomness`, the
    "fixed randomness" attack setting) every SAP layer is the identity and
    the view computes exactly the base.

    Args:
        model: A functional `keras.Model` (as built by `hardened.models`).
        ratio: Number of draws per example as a fraction of the layer's
            features (Dhillon et al.'s ``r``; 1.0 as in the recipes).
        seed: Seed of the first SAP layer; the k-th target gets ``seed + k``.
        layers: Name(s) of the top-level layers whose outputs are pruned;
            default `SAP_VIEW_LAYERS` (``fc1``, the recipes' placement).
            Dhillon et al. prune every hidden layer (e.g. ``["conv1", ...,
            "fc2"]``), but the categorical draws cost O(draws x features)
            per example on JAX (Gumbel noise), which is prohibitive after
            the convs (26x26x32 features after MNIST's conv1).

    Returns:
        A functional model named ``<model.name>_sap``.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError("sap_view needs a functional keras.Model (as built by hardened.models).")
    if float(ratio) <= 0:
        raise ValueError(f"sap_view: ratio must be > 0, got {ratio!r}.")
    by_name = {layer.name: layer for layer in model.layers}
    targets = list(SAP_VIEW_LAYERS if layers is None else ([layers] if isinstance(layers, str) else layers))
    missing = [name for name in targets if name not in by_name]
    if missing or not targets:
        raise ValueError(f"sap_view: no top-level layer(s) {missing or targets!r} in model '{model.name}'; "
                         f"its layers are {sorted(by_name)}.")
    if any(f"{name}_sap" in by_name for name in targets):
        raise ValueError(f"sap_view: model '{model.name}' already has SAP layers after {targets}.")
    saps = {name: StochasticActivationPruning(ratio, seed=int(seed) + k, name=f"{name}_sap")
            for k, name in enumerate(targets)}

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        return saps[layer.name](out) if layer.name in saps else out

    new = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    new.name = f"{model.name}_sap"
    return new


def randomized_layers(model):
    """All layers of ``model`` (nested included) that are random at inference."""
    return [layer for layer in _walk(model) if getattr(layer, "is_randomized", False)]


def set_randomness(model, enabled):
    """Switch the inference-time randomness of every randomized layer on or off.

    With ``enabled=False`` stochastic layers become identities, random switches
    use their fixed path (path 0 unless set), and per-call GI3 views reuse one
    fixed draw: the "fixed randomness" setting of seed 004. Functions already
    traced (``jit_compile``) must be rebuilt to see the change.

    Returns:
        The number of layers switched.
    """
    layers = randomized_layers(model)
    for layer in layers:
        layer.randomness = bool(enabled)
    return len(layers)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False, recursive=True):
        yield sub
