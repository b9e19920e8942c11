"""The `Attack` base class, the registry and shared helpers of the attacks.

An attack is configured once (``Attack(**params)``, validated eagerly) and
run with ``generate(model, x, y, target=None)``. Models take float images in
[0, 1] (NHWC) and return logits. Everything here is numpy or `keras.ops`;
input gradients come from `hardened.attacks._grad` (the one backend-specific
module).
"""

import copy
import difflib
import math
import numbers

import keras
import numpy as np
from tqdm.auto import tqdm

from hardened.attacks import _grad
from hardened.attacks.losses import LOSSES, check_loss, get_loss
from hardened.validation import check_images

#: Registered attacks: name -> class. Filled by the `register` decorator.
ATTACKS = {}

NORMS = ("linf", "l2", "l1", "l0")


def register(cls):
    """Class decorator: add an `Attack` subclass to `ATTACKS` under ``cls.name``."""
    ATTACKS[cls.name] = cls
    return cls


def list_attacks():
    """Names of the registered attacks, sorted."""
    return sorted(ATTACKS)


def get_attack(name, **params):
    """Build the attack registered as ``name`` with ``params``.

    Raises:
        ValueError: unknown name (with the closest names as a suggestion) or
            invalid parameters.
    """
    key = str(name).lower()
    if key not in ATTACKS:
        hint = difflib.get_close_matches(key, list(ATTACKS), n=3)
        raise ValueError(
            f"Unknown attack {name!r}. Known attacks: {list_attacks()}"
            + (f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ".")
        )
    return ATTACKS[key](**params)


def _fmt(value):
    return f"{value!r}"


class Attack:
    """Base class of all attacks.

    Subclasses declare ``name``, ``defaults`` (every hyper-parameter and its
    default), ``norm`` (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"`` or ``None``),
    ``gradient_free`` and implement ``_validate`` and ``_attack_batch``.

    Attributes:
        name: Registry name.
        params: All hyper-parameters, defaults included and resolved (e.g. a
            default step size is stored as its value).
        norm: Threat model of the perturbation.
        targeted: Whether ``generate`` needs ``target`` labels.
        gradient_free: True when the attack only queries the model's outputs.
    """

    name = "attack"
    norm = None
    gradient_free = False
    defaults = {}

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = sorted(self.defaults)
            hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            hint = "; ".join(f"{u!r} -> did you mean {h[0]!r}?" for u, h in hints.items() if h)
            raise ValueError(
                f"{type(self).__name__} got unknown parameter(s) {unknown}. Known parameters: {known}."
                + (f" ({hint})" if hint else "")
            )
        self.params = {**copy.deepcopy(self.defaults), **params}
        # EOT: number of forward/backward passes averaged per gradient (see `eot`).
        self._grad_samples = 1
        # BPDA (`bpda(..., softmax_to_sigmoid=True)`): loss used instead of "ce".
        self._loss_override = None
        if "seed" in self.params:
            self._check_int("seed", low=0)
        if "targeted" in self.params:
            if not isinstance(self.params["targeted"], (bool, np.bool_)):
                raise ValueError(f"{self.name}: targeted must be True or False, got {self.params['targeted']!r}.")
            self.params["targeted"] = bool(self.params["targeted"])
        if "loss" in self.params:
            self.params["loss"] = check_loss(self.params["loss"])
        if "norm" in self.params:
            self.norm = self._check_choice("norm", self._norms())
        self._validate()

    # ------------------------------------------------------------ properties
    @property
    def targeted(self):
        """Whether the attack aims at target labels."""
        return bool(self.params.get("targeted", False))

    def __repr__(self):
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------- param checking
    def _norms(self):
        return ("linf", "l2")

    def _validate(self):
        """Check and resolve ``self.params`` (subclasses)."""

    def _error(self, key, requirement):
        raise ValueError(f"{self.name}: {key} must be {requirement}, got {self.params[key]!r}.")

    def _check_number(self, key, low=None, high=None, low_open=False, high_open=False, allow_none=False):
        value = self.params[key]
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            self._error(key, "a finite number" + (" or None" if allow_none else ""))
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            self._error(key, f"{'>' if low_open else '>='} {low}")
        if high is not None and (value > high or (high_open and value == high)):
            self._error(key, f"{'<' if high_open else '<='} {high}")
        self.params[key] = value
        return value

    def _check_int(self, key, low=None, allow_none=False):
        value = self.params[key]
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self._error(key, "an integer" + (" or None" if allow_none else ""))
        value = int(value)
        if low is not None and value < low:
            self._error(key, f">= {low}")
        self.params[key] = value
        return value

    def _check_bool(self, key):
        value = self.params[key]
        if not isinstance(value, (bool, np.bool_)):
            self._error(key, "True or False")
        self.params[key] = bool(value)
        return bool(value)

    def _check_choice(self, key, choices):
        value = self.params[key]
        if isinstance(value, str):  # case-insensitive; store the canonical spelling
            canonical = {str(c).lower(): c for c in choices}
            value = canonical.get(value.lower(), value)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            raise ValueError(
                f"{self.name}: {key} must be one of {tuple(choices)}, got {self.params[key]!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else ".")
            )
        self.params[key] = value
        return value

    def _check_loss_param(self, allowed=LOSSES):
        loss = self.params["loss"]
        if loss not in allowed:
            raise ValueError(f"{self.name}: loss must be one of {tuple(allowed)}, got {loss!r}.")

    # --------------------------------------------------------------- running
    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """Craft adversarial examples.

        Args:
            model: A `keras.Model` mapping float images in [0, 1] (NHWC) to logits.
            x: Images, array-like ``(N, H, W, C)`` in [0, 1].
            y: True labels, ints ``(N,)``.
            target: Target labels, ints ``(N,)``; required by targeted attacks,
                refused by untargeted ones.
            batch_size: Images attacked together.
            progress: Show a tqdm progress bar over the batches.

        Returns:
            ``x_adv``: float32 numpy array of ``x``'s shape, values in [0, 1].

        Raises:
            ValueError / TypeError: invalid images, labels or arguments.
        """
        x, y, target, num_classes = self._prepare(model, x, y, target, batch_size)
        out = np.empty_like(x)
        rng = np.random.default_rng(self.params.get("seed", 0))
        starts = range(0, len(x), batch_size)
        for start in tqdm(starts, disable=not progress, desc=self.name, unit="batch", leave=False):
            sl = slice(start, start + batch_size)
            tb = None if target is None else target[sl]
            out[sl] = self._attack_batch(model, x[sl], y[sl], tb, rng)
        return self._finish(out, x)

    def _prepare(self, model, x, y, target, batch_size):
        if not isinstance(model, keras.Model) and not callable(model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        try:
            input_shape = tuple(model.input_shape)[1:]
        except Exception:  # subclassed / unbuilt models have no static input shape
            input_shape = None
        x = check_images(x, input_shape=input_shape)
        num_classes = self._output_size(model, x)
        y = check_labels(y, len(x), num_classes, "y")
        if self.targeted and target is None:
            raise ValueError(f"{self.name} is targeted: pass target labels (target=...).")
        if not self.targeted and target is not None:
            raise ValueError(f"{self.name} is untargeted (targeted=False) but target labels were given; "
                             "build the attack with targeted=True to use them.")
        if target is not None:
            target = check_labels(target, len(x), num_classes, "target")
        self._num_classes = num_classes
        return x, y, target, num_classes

    @staticmethod
    def _output_size(model, x):
        try:
            shape = tuple(model.output_shape)
            if len(shape) == 2 and shape[-1] is not None:
                return int(shape[-1])
        except Exception:  # no static output shape: run one image
            pass
        if len(x) == 0:
            raise ValueError("Cannot infer the number of classes from an empty batch and a model without "
                             "a static output shape.")
        logits = keras.ops.convert_to_numpy(model(x[:1], training=False))
        if logits.ndim != 2:
            raise ValueError(f"The model must return logits of shape (N, classes), got {logits.shape}.")
        return int(logits.shape[-1])

    def _finish(self, out, x):
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        eps = self.params.get("eps")
        # Guard against float drift: the result must lie in the advertised ball.
        if eps is not None and self.norm == "linf":
            out = np.clip(out, x - eps, x + eps).clip(0.0, 1.0)
        elif eps is not None and self.norm == "l2":
            out = x + project_l2(out - x, eps)
            out = np.clip(out, 0.0, 1.0)
        return out.astype(np.float32)

    def _attack_batch(self, model, x, y, target, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _loss_name(self):
        loss = self.params.get("loss", "ce")
        if self._loss_override is not None and loss == "ce":
            return self._loss_override
        return loss

    def _objective(self):
        return get_loss(self._loss_name(), self.targeted)

    def _loss_grad(self, model, loss_fn):
        return _grad.make_loss_grad(model, loss_fn, grad_samples=self._grad_samples)

    def _forward(self, model, max_batch=None):
        return _grad.make_forward(model, samples=self._grad_samples, max_batch=max_batch)

    def _onehots(self, y, target):
        eye = np.eye(self._num_classes, dtype=np.float32)
        y_oh = eye[y]
        t_oh = eye[target] if target is not None else y_oh
        return y_oh, t_oh

    def _success(self, logits, y, target):
        pred = np.argmax(logits, axis=-1)
        return pred == target if self.targeted else pred != y

    def _with(self, **attrs):
        """Shallow copy with private attributes changed (used by the adaptive wrappers)."""
        new = copy.copy(self)
        new.params = dict(self.params)
        for key, value in attrs.items():
            setattr(new, key, value)
        return new

    def _with_grad_samples(self, n):
        return self._with(_grad_samples=int(n))

    def _with_loss_override(self, loss):
        if "loss" not in self.params and not getattr(self, "_accepts_loss_override", False):
            raise ValueError(f"{self.name} has no loss parameter: softmax_to_sigmoid does not apply.")
        return self._with(_loss_override=loss)


def check_labels(labels, n, num_classes, name="y"):
    """Validate integer class labels ``(n,)`` against ``num_classes``; returns int64 numpy."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape == (n, num_classes):
        raise ValueError(f"{name} looks one-hot (shape {arr.shape}); pass integer labels (e.g. {name}.argmax(-1)).")
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be integer labels of shape ({n},), got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integer class labels, got non-integer values.")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if n and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}] (the model has {num_classes} outputs); "
            f"found values in [{arr.min()}, {arr.max()}]."
        )
    return arr


# ------------------------------------------------------------ numpy geometry
def _flat_norm(v, ord_):
    flat = v.reshape(len(v), -1)
    if ord_ == "linf":
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(len(v), np.float32)
    if ord_ == "l2":
        return np.sqrt(np.sum(flat.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    if ord_ == "l1":
        return np.abs(flat).sum(axis=1)
    if ord_ == "l0":
        return (flat != 0).sum(axis=1).astype(np.float32)
    raise ValueError(ord_)


def norms(v, ord_):
    """Per-example ``ord_`` norm (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"``) of a batch."""
    return _flat_norm(np.asarray(v, np.float32), ord_)


def _bcast(v, like):
    return v.reshape((len(like),) + (1,) * (like.ndim - 1))


def project_l2(delta, eps):
    """Scale each example of ``delta`` into the L2 ball of radius ``eps``."""
    n = _flat_norm(delta, "l2")
    factor = np.minimum(1.0, eps / np.maximum(n, 1e-12))
    return (delta * _bcast(factor, delta)).astype(np.float32)


def normalize_l2(g):
    """``g / ||g||_2`` per example (zero stays zero)."""
    n = _flat_norm(g, "l2")
    return (g / _bcast(np.maximum(n, 1e-12), g)).astype(np.float32)


def step_direction(g, norm):
    """Steepest-ascent direction of unit ``norm``: sign for linf, normalised gradient for l2."""
    if norm == "linf":
        return np.sign(g).astype(np.float32)
    return normalize_l2(g)


def project(x_adv, x0, eps, norm):
    """Project ``x_adv`` onto the ``norm`` ball of radius ``eps`` around ``x0`` and onto [0, 1]."""
    if norm == "linf":
        x_adv = np.clip(x_adv, x0 - eps, x0 + eps)
    else:
        x_adv = x0 + project_l2(x_adv - x0, eps)
    return np.clip(x_adv, 0.0, 1.0).astype(np.float32)


def random_start(x0, eps, norm, rng):
    """A uniform random point of the ``norm`` ball around ``x0``, clipped to [0, 1]."""
    if norm == "linf":
        x = x0 + rng.uniform(-eps, eps, size=x0.shape).astype(np.float32)
    else:
        d = int(np.prod(x0.shape[1:]))
        direction = normalize_l2(rng.standard_normal(x0.shape).astype(np.float32))
        radius = eps * rng.uniform(0, 1, size=len(x0)) ** (1.0 / d)
        x = x0 + direction * _bcast(radius.astype(np.float32), x0)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def eval_loss(loss_fn, logits, *args):
    """Evaluate a keras.ops loss on numpy logits, returning numpy."""
    ops = keras.ops
    return np.asarray(ops.convert_to_numpy(loss_fn(ops.convert_to_tensor(logits), *[
        ops.convert_to_tensor(a) for a in args])), dtype=np.float32)


def margin_np(logits, labels):
    """numpy ``z_y - max_{j != y} z_j`` (positive while ``labels`` wins)."""
    idx = np.arange(len(logits))
    real = logits[idx, labels]
    other = logits.copy()
    other[idx, labels] = -np.inf
    return real - other.max(axis=1)
