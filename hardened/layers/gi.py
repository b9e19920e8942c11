"""Gradient inhibition (seed 000) and logits augmentation (seed 002) as weight views.

A view wraps a layer of a built model and computes with a transformed kernel;
the layer's own variables are shared and never modified, so one checkpoint
yields the plain model and all of its GI variants:

* GI1: ``w + eps * sign(w)``
* GI2: ``(1 + eps) * w``  (logits augmentation ``w <- tau * w`` is GI2 with ``1 + eps = tau``)
* GI3: ``w + eps * U(0, 1) * sign(w)``, ``U`` drawn once from ``seed``
  (``resample="once"``) or anew on every call (``resample="per_call"``).

Only kernels are transformed (biases are left alone). On a `HashedDense` the
transform acts on the K real weights, so GI3's noise is shared by the virtual
entries of one hash bucket.
"""

import difflib

import keras
import numpy as np
from keras import ops

from hardened.layers.stochastic import RandomizedLayer

GI_METHODS = ("gi1", "gi2", "gi3")
RESAMPLE = ("once", "per_call")

# Paper defaults (seed 000, Table I): epsilon per dataset and method.
PAPER_EPSILON = {
    "mnist": {"gi1": 0.1, "gi2": 3.0, "gi3": 0.2},
    "fashion_mnist": {"gi1": 0.1, "gi2": 3.0, "gi3": 0.2},
    "cifar10": {"gi1": 0.3, "gi2": 5.0, "gi3": 0.6},
    "imagenet": {"gi1": 0.4, "gi2": 6.0, "gi3": 0.8},
}


def gi_transform(kernel, method, epsilon, noise=None):
    """Apply a GI transform to a kernel tensor (``noise`` ~ U(0,1) for GI3)."""
    if method == "gi1":
        return kernel + epsilon * ops.sign(kernel)
    if method == "gi2":
        return (1.0 + epsilon) * kernel
    if method == "gi3":
        return kernel + epsilon * noise * ops.sign(kernel)
    raise ValueError(f"Unknown GI method {method!r}; expected one of {GI_METHODS}.")


@keras.saving.register_keras_serializable(package="hardened")
class GIView(RandomizedLayer):
    """Runs ``layer`` with its kernel seen through a GI transform.

    Args:
        layer: A layer with a ``kernel`` variable (Dense, Conv2D, HashedDense,
            PrunableDense, ...), shared, not copied.
        method: ``"gi1"``, ``"gi2"`` or ``"gi3"``.
        epsilon: Strength ε (>= 0).
        resample: GI3 only: ``"once"`` (deterministic, drawn from ``seed``)
            or ``"per_call"`` (a fresh draw every forward pass).
        seed: Seed of the GI3 noise.
    """

    def __init__(self, layer, method, epsilon, resample="once", seed=0, **kwargs):
        kwargs.setdefault("name", f"gi_{layer.name if isinstance(layer, keras.layers.Layer) else 'view'}")
        super().__init__(seed=seed, **kwargs)
        if not isinstance(layer, keras.layers.Layer):
            layer = keras.saving.deserialize_keras_object(layer)
        method = str(method).lower()
        if method not in GI_METHODS:
            raise ValueError(f"Unknown GI method {method!r}; expected one of {GI_METHODS}.")
        if not float(epsilon) >= 0:
            raise ValueError(f"GI epsilon must be >= 0, got {epsilon!r}.")
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}.")
        self.layer = layer
        self.method = method
        self.epsilon = float(epsilon)
        self.resample = resample
        self.is_randomized = method == "gi3" and resample == "per_call"
        self._noise = None

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if getattr(self.layer, "kernel", None) is None:
            raise ValueError(f"GIView: layer '{self.layer.name}' has no `kernel` to transform.")
        if self.method == "gi3":
            # Derived from the seed, never stored: same draw on every backend.
            rng = np.random.default_rng(int(self.seed or 0))
            self._noise = rng.random(tuple(self.layer.kernel.shape), dtype=np.float32)
        self.built = True

    def call(self, inputs, training=None):
        kernel_var = self.layer.kernel
        kernel = ops.convert_to_tensor(kernel_var)
        noise = None
        if self.method == "gi3":
            if self.resample == "per_call" and self.randomness:
                noise = keras.random.uniform(ops.shape(kernel), dtype=kernel.dtype, seed=self.seed_generator)
            else:
                noise = ops.convert_to_tensor(self._noise, dtype=kernel.dtype)
        new_kernel = gi_transform(kernel, self.method, self.epsilon, noise)
        trainable = [new_kernel if v is kernel_var else v for v in self.layer.trainable_variables]
        non_trainable = [new_kernel if v is kernel_var else v for v in self.layer.non_trainable_variables]
        outputs, _ = self.layer.stateless_call(trainable, non_trainable, inputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "layer": keras.saving.serialize_keras_object(self.layer),
            "method": self.method,
            "epsilon": self.epsilon,
            "resample": self.resample,
        })
        return config


def kernel_layers(model):
    """Top-level layers of ``model`` that have a kernel, in model order."""
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None
            or isinstance(layer, GIView)]


def _resolve_targets(model, layers, default_last):
    candidates = kernel_layers(model)
    if layers is None:
        return [layer.name for layer in candidates[-default_last:]]
    names = [layers] if isinstance(layers, str) else list(layers)
    known = {layer.name for layer in candidates}
    for name in names:
        if name not in known:
            hint = difflib.get_close_matches(name, sorted(known), n=3)
            raise ValueError(
                f"Layer {name!r} is not a top-level layer with a kernel in model "
                f"'{model.name}'. Candidates: {sorted(known)}"
                + (f"; did you mean {hint}?" if hint else ".")
            )
    return names


def apply_gi(model, method, epsilon, layers=None, resample="once", seed=0):
    """A new model that shares ``model``'s weights and sees some kernels through GI.

    Args:
        model: A functional `keras.Model`.
        method: ``"gi1"``, ``"gi2"`` or ``"gi3"``.
        epsilon: Strength ε.
        layers: Names of the layers to transform; default: the last three
            layers with a kernel (seed 000 applies GI to the last three layers).
        resample: GI3 noise, ``"once"`` or ``"per_call"``.
        seed: Seed of the GI3 noise.

    Returns:
        A functional model. ``model`` itself is unchanged, and so are the
        shared weights; `remove_gi` gives back an undefended model.
    """
    targets = set(_resolve_targets(model, layers, 3))

    def clone(layer):
        if layer.name in targets:
            inner = layer.layer if isinstance(layer, GIView) else layer
            return GIView(inner, method, epsilon, resample=resample, seed=seed, name=f"gi_{inner.name}")
        return layer

    return _rebuild(model, clone, suffix=f"_{method}")


def logits_augmentation(model, tau, layer=None):
    """Seed 002's ``w <- tau * w`` on the last layer, as a view (GI2 with ε = τ - 1)."""
    if not float(tau) >= 1:
        raise ValueError(f"logits augmentation needs tau >= 1, got {tau!r}.")
    layers = [layer] if layer is not None else _resolve_targets(model, None, 1)
    view = apply_gi(model, "gi2", float(tau) - 1.0, layers=layers)
    # Named for what it is, so reports do not call a logits-augmented model "..._gi2".
    view.name = view.name.removesuffix("_gi2") + "_la"
    return view


def remove_gi(model):
    """A model with every GI view replaced by the layer it wraps (weights shared)."""
    return _rebuild(model, lambda layer: layer.layer if isinstance(layer, GIView) else layer, suffix="")


def _rebuild(model, clone_function, suffix):
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise TypeError("GI views need a functional keras.Model (as built by hardened.models).")
    name = model.name
    for s in ("_gi1", "_gi2", "_gi3", "_la"):
        name = name.removesuffix(s)
    new = keras.models.clone_model(model, clone_function=clone_function)
    new.name = name + suffix
    return new
