"""Per-example attack losses, written with `keras.ops` (any backend).

Every loss takes logits ``(N, K)`` and labels, given as int class indices
``(N,)`` or one-hot ``(N, K)``, and returns a ``(N,)`` tensor that the attacker
*maximises*. Untargeted losses grow as the true class loses; targeted variants
grow as the target class wins.

``ce`` is computed exactly like TensorFlow's and PyTorch's cross-entropy
(log-softmax of the logits), on purpose: where a defense saturates the
softmax, its float32 gradient is exactly zero, and a CE attack fails in the
same way it would in any other framework. That exposes gradient masking
instead of hiding it. Use ``margin`` (Carlini & Wagner) or ``dlr`` (Croce &
Hein) to attack through logit scaling.
"""

import difflib

from keras import ops

#: Names accepted by `get_loss` (and by every attack's ``loss`` parameter).
LOSSES = ("ce", "margin", "dlr", "ce_sigmoid")


def check_loss(name):
    """Return ``name`` if it is a known loss, else raise ValueError with a suggestion."""
    if name in LOSSES:
        return name
    hint = difflib.get_close_matches(str(name), LOSSES, n=1)
    raise ValueError(
        f"Unknown loss {name!r}; expected one of {LOSSES}" + (f" (did you mean {hint[0]!r}?)" if hint else ".")
    )


def _onehot(labels, logits):
    """Labels as a float one-hot tensor shaped like ``logits``."""
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2:
        return ops.cast(labels, logits.dtype)
    return ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype=logits.dtype)


def _other_max(logits, onehot):
    """Largest logit among the classes that are not ``onehot``'s."""
    masked = ops.where(onehot > 0, ops.full_like(logits, float("-inf")), logits)
    return ops.max(masked, axis=-1)


def ce(logits, labels):
    """Cross-entropy ``-log softmax(z)_y`` (untargeted: maximise)."""
    logits = ops.convert_to_tensor(logits)
    onehot = _onehot(labels, logits)
    return -ops.sum(onehot * ops.log_softmax(logits, axis=-1), axis=-1)


def ce_targeted(logits, target):
    """``log softmax(z)_t``: maximising it is minimising CE to the target."""
    return -ce(logits, target)


def margin(logits, labels):
    """C&W margin ``max_{j != y} z_j - z_y`` (positive once misclassified)."""
    logits = ops.convert_to_tensor(logits)
    onehot = _onehot(labels, logits)
    return _other_max(logits, onehot) - ops.sum(onehot * logits, axis=-1)


def margin_targeted(logits, target):
    """C&W targeted margin ``z_t - max_{j != t} z_j`` (positive once the target wins)."""
    return -margin(logits, target)


def dlr(logits, labels):
    """Difference of logits ratio (Croce & Hein, 2020), untargeted.

    ``(max_{j != y} z_j - z_y) / (z_pi1 - z_pi3)`` with ``z_pi`` the sorted
    logits: invariant to scaling and shifting the logits. Needs >= 3 classes.
    """
    logits = ops.convert_to_tensor(logits)
    if logits.shape[-1] is not None and logits.shape[-1] < 3:
        raise ValueError(f"DLR loss needs at least 3 classes, the model has {logits.shape[-1]}.")
    onehot = _onehot(labels, logits)
    top = ops.top_k(logits, 3)[0]
    return (_other_max(logits, onehot) - ops.sum(onehot * logits, axis=-1)) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits, labels, target):
    """Targeted DLR: ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)``. Needs >= 4 classes."""
    logits = ops.convert_to_tensor(logits)
    if logits.shape[-1] is not None and logits.shape[-1] < 4:
        raise ValueError(f"Targeted DLR loss needs at least 4 classes, the model has {logits.shape[-1]}.")
    y = _onehot(labels, logits)
    t = _onehot(target, logits)
    top = ops.top_k(logits, 4)[0]
    num = ops.sum(t * logits, axis=-1) - ops.sum(y * logits, axis=-1)
    return num / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def ce_sigmoid(logits, labels):
    """Sigmoid (one-vs-all) cross-entropy: softmax replaced by sigmoid (seed 000's BPDA).

    ``softplus(-z_y) + sum_{j != y} softplus(z_j)``: each logit gets its own
    sigmoid, so the gradient of a class does not vanish because another class
    dominates the softmax.
    """
    logits = ops.convert_to_tensor(logits)
    onehot = _onehot(labels, logits)
    return ops.sum(ops.softplus((1.0 - 2.0 * onehot) * logits), axis=-1)


def ce_sigmoid_targeted(logits, target):
    """Targeted sigmoid cross-entropy (maximise: minus the loss to the target)."""
    return -ce_sigmoid(logits, target)


# Objectives with the common signature ``f(logits, y_onehot, t_onehot)``.
# Module-level functions so that compiled gradient functions can be cached.
def _obj_ce(logits, y, t):
    return ce(logits, y)


def _obj_ce_t(logits, y, t):
    return ce_targeted(logits, t)


def _obj_margin(logits, y, t):
    return margin(logits, y)


def _obj_margin_t(logits, y, t):
    return margin_targeted(logits, t)


def _obj_dlr(logits, y, t):
    return dlr(logits, y)


def _obj_dlr_t(logits, y, t):
    return dlr_targeted(logits, y, t)


def _obj_ce_sigmoid(logits, y, t):
    return ce_sigmoid(logits, y)


def _obj_ce_sigmoid_t(logits, y, t):
    return ce_sigmoid_targeted(logits, t)


_OBJECTIVES = {
    ("ce", False): _obj_ce, ("ce", True): _obj_ce_t,
    ("margin", False): _obj_margin, ("margin", True): _obj_margin_t,
    ("dlr", False): _obj_dlr, ("dlr", True): _obj_dlr_t,
    ("ce_sigmoid", False): _obj_ce_sigmoid, ("ce_sigmoid", True): _obj_ce_sigmoid_t,
}


def get_loss(name, targeted=False):
    """The objective ``f(logits, y_onehot, t_onehot) -> (N,)`` that an attack maximises.

    Args:
        name: One of `LOSSES`.
        targeted: Targeted variant (uses ``t_onehot``; DLR also uses ``y``).

    Returns:
        A module-level function (stable identity, so compiled gradients cache).
    """
    return _OBJECTIVES[(check_loss(name), bool(targeted))]


def weighted_logits(logits, weights):
    """``sum_k w_k z_k`` per example: its input gradient is a weighted row sum of dz/dx."""
    return ops.sum(ops.convert_to_tensor(weights, dtype=logits.dtype) * logits, axis=-1)


def weighted_probs(logits, weights):
    """``sum_k w_k softmax(z)_k`` per example (JSMA-F's saliency on probabilities)."""
    return ops.sum(ops.convert_to_tensor(weights, dtype=logits.dtype) * ops.softmax(logits, axis=-1), axis=-1)


def weighted_sigmoid(logits, weights):
    """``sum_k w_k sigmoid(z_k)`` per example (JSMA-F with softmax replaced by sigmoid)."""
    return ops.sum(ops.convert_to_tensor(weights, dtype=logits.dtype) * ops.sigmoid(logits), axis=-1)
