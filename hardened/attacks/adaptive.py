"""Adaptive-attack wrappers: EOT, fixed randomness and BPDA (Athalye et al., 2018).

Each wrapper takes an `Attack` and returns an `Attack`, so they compose:
``eot(bpda(get_attack("pgd", loss="margin"), replace={...}), n=10)``.
"""

import copy
import difflib

import keras
from keras import ops

from hardened.attacks.base import Attack
from hardened.layers import randomized_layers, set_randomness


class _Wrapper(Attack):
    """An attack that delegates to ``inner`` (name, norm, targeting)."""

    wrapper_name = "wrapper"
    defaults = {}

    def __init__(self, inner, **wrapper_params):
        if not isinstance(inner, Attack):
            raise TypeError(f"{self.wrapper_name} wraps an Attack, got {type(inner).__name__}.")
        self.inner = inner
        self._grad_samples = 1
        self._loss_override = None
        self.wrapper_params = dict(wrapper_params)
        self.name = f"{self.wrapper_name}({inner.name})"
        self.norm = inner.norm
        self.gradient_free = inner.gradient_free

    @property
    def params(self):
        """The inner attack's parameters plus this wrapper's."""
        return {**self.inner.params, **self.wrapper_params}

    @property
    def targeted(self):
        return self.inner.targeted

    def __repr__(self):
        extra = ", ".join(f"{k}={v!r}" for k, v in self.wrapper_params.items())
        return f"{self.wrapper_name}({self.inner!r}{', ' + extra if extra else ''})"

    def _with_grad_samples(self, n):
        new = self._with()
        new.inner = self.inner._with_grad_samples(n)
        return new

    def _with_loss_override(self, loss):
        new = self._with()
        new.inner = self.inner._with_loss_override(loss)
        return new

    def _with(self, **attrs):
        new = copy.copy(self)
        for key, value in attrs.items():
            setattr(new, key, value)
        return new

    def _adopt_results(self, ran):
        """Expose the ``last_*`` results (DeepFool norms, query counts) of the attack that ran."""
        for key, value in vars(ran).items():
            if key.startswith("last_"):
                setattr(self, key, value)


class EOT(_Wrapper):
    """Expectation over transformation: average ``n`` gradients of a randomized model per step."""

    wrapper_name = "eot"

    def __init__(self, inner, n=10):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"eot: n must be a positive integer, got {n!r}.")
        super().__init__(inner, eot_samples=n)
        self.n = n

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """Run the inner attack with every gradient (and score query) averaged over ``n`` passes."""
        inner = self.inner._with_grad_samples(self.n)
        out = inner.generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
        self._adopt_results(inner)
        return out


def eot(attack, n=10):
    """EOT version of ``attack``: each gradient is the mean of ``n`` forward/backward passes.

    Meant for randomized defenses (random switching, stochastic activations,
    GI3 resampled per call): every pass draws the model's randomness anew.
    Gradient-free attacks average ``n`` queries of the logits instead.

    Args:
        attack: Any `Attack` (gradient-based ones are the usual choice).
        n: Number of samples (seed 004: 10).

    Returns:
        An `Attack` named ``"eot(<inner>)"``.
    """
    return EOT(attack, n=n)


class FixedRandomness(_Wrapper):
    """Craft on the model with its randomness switched off; restore it afterwards."""

    wrapper_name = "fixed_randomness"

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """Run the inner attack with `set_randomness(model, False)`, then restore every layer's state."""
        saved = [(layer, layer.randomness) for layer in randomized_layers(model)]
        try:
            set_randomness(model, False)
            out = self.inner.generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
            self._adopt_results(self.inner)
            return out
        finally:
            for layer, state in saved:
                layer.randomness = state


def fixed_randomness(attack):
    """Seed 004's "fixed randomness" setting: craft on one fixed path of a randomized model.

    While crafting, every randomized layer is switched off
    (`hardened.layers.set_randomness`): stochastic layers act as identities,
    random switches take their fixed path, per-call GI3 reuses one draw. The
    previous states are restored afterwards, even on error; evaluating the
    examples on the randomized model is the evaluator's job.
    """
    return FixedRandomness(attack)


class StraightThrough(keras.layers.Layer):
    """Forward: ``layer(x)``; backward: the gradient of ``approx(x)`` (BPDA).

    ``out = approx(x) + stop_gradient(layer(x) - approx(x))``.
    Runtime only (wraps existing layers; weights are shared, not copied).
    """

    def __init__(self, layer, approx, **kwargs):
        kwargs.setdefault("name", f"bpda_{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer
        self.approx = approx

    def call(self, inputs, *args, **kwargs):
        exact = self.layer(inputs, *args, **kwargs)
        approx = self.approx(inputs)
        return approx + ops.stop_gradient(exact - approx)


def _identity(x):
    return x


def bpda_model(model, replace):
    """A model sharing ``model``'s weights whose named layers have BPDA backward passes.

    Args:
        model: A functional or Sequential `keras.Model`.
        replace: ``{layer_name: approx}`` with ``approx`` a callable written
            with `keras.ops` (or a Keras layer), or ``None`` / ``"identity"``
            for the identity (the usual choice for quantisation, JPEG,
            median filters and similar input transforms).

    Returns:
        A new model with the same forward pass.
    """
    if not hasattr(model, "_nodes_by_depth") and not isinstance(model, keras.Sequential):
        raise TypeError("bpda needs a functional or Sequential keras.Model to rebuild.")
    names = {layer.name for layer in model.layers}
    approx = {}
    for name, fn in dict(replace).items():
        if name not in names:
            hint = difflib.get_close_matches(name, sorted(names), n=3)
            raise ValueError(
                f"bpda: model '{model.name}' has no top-level layer {name!r}. Layers: {sorted(names)}"
                + (f"; did you mean {hint}?" if hint else ".")
            )
        if fn is None or fn == "identity":
            fn = _identity
        elif not callable(fn):
            raise TypeError(f"bpda: the approximation of {name!r} must be callable, 'identity' or None.")
        approx[name] = fn

    def clone(layer):
        if layer.name in approx:
            return StraightThrough(layer, approx[layer.name])
        return layer

    return keras.models.clone_model(model, clone_function=clone)


class BPDA(_Wrapper):
    """Backward-pass differentiable approximation around an inner attack."""

    wrapper_name = "bpda"

    def __init__(self, inner, replace=None, softmax_to_sigmoid=False):
        if not replace and not softmax_to_sigmoid:
            raise ValueError("bpda needs replace={layer_name: approx} and/or softmax_to_sigmoid=True.")
        if inner.gradient_free:
            raise ValueError(f"bpda changes gradients only; {inner.name} is gradient-free.")
        if replace is not None and not isinstance(replace, dict):
            raise TypeError(f"bpda: replace must be a dict {{layer_name: approx}}, got {type(replace).__name__}.")
        names = sorted(replace) if replace else []
        super().__init__(inner, bpda_replace=names, softmax_to_sigmoid=bool(softmax_to_sigmoid))
        if softmax_to_sigmoid:
            self.inner = inner._with_loss_override("ce_sigmoid")  # raises if no loss applies
        self.replace = dict(replace or {})
        self.softmax_to_sigmoid = bool(softmax_to_sigmoid)

    @property
    def params(self):
        params = {**self.inner.params, **self.wrapper_params}
        if self.softmax_to_sigmoid and params.get("loss") == "ce":
            params["loss"] = "ce_sigmoid"
        return params

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """Craft on the straight-through model (same forward pass, approximated backward)."""
        target_model = bpda_model(model, self.replace) if self.replace else model
        out = self.inner.generate(target_model, x, y, target=target, batch_size=batch_size, progress=progress)
        self._adopt_results(self.inner)
        return out


def bpda(attack, replace=None, softmax_to_sigmoid=False):
    """BPDA version of ``attack``.

    Args:
        attack: A gradient-based `Attack`.
        replace: ``{layer_name: approx}``: on the backward pass only, the
            named top-level layers act as ``approx`` (see `bpda_model`).
        softmax_to_sigmoid: Seed 000's BPDA against GI: the attack's ``"ce"``
            loss becomes ``"ce_sigmoid"`` (JSMA-F uses sigmoids instead of
            softmax probabilities).

    Returns:
        An `Attack` named ``"bpda(<inner>)"``.
    """
    return BPDA(attack, replace=replace, softmax_to_sigmoid=softmax_to_sigmoid)
