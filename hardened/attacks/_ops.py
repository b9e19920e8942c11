"""Per-example geometry on backend tensors, for the compiled attack steps (`_grad.make_step`).

The numpy twins in `hardened.attacks.base` (``project``, ``step_direction``,
``norms``) serve the code outside the steps; these are the same formulas in
`keras.ops`, so that an iteration never leaves the backend.
"""

from keras import ops


def bcast(v, like):
    """``v`` of shape ``(N,)`` reshaped to broadcast against ``like`` ``(N, ...)``."""
    return ops.reshape(v, (-1,) + (1,) * (len(like.shape) - 1))


def flat(v):
    """``(N, ...) -> (N, F)``."""
    return ops.reshape(v, (ops.shape(v)[0], -1))


def l2(v):
    """Per-example L2 norm."""
    return ops.sqrt(ops.sum(ops.square(flat(v)), axis=1))


def sq_l2(v):
    """Per-example squared L2 norm."""
    return ops.sum(ops.square(flat(v)), axis=1)


def l1(v):
    """Per-example L1 norm."""
    return ops.sum(ops.abs(flat(v)), axis=1)


def normalize_l2(g):
    """``g / ||g||_2`` per example (zero stays zero)."""
    return g / bcast(ops.maximum(l2(g), 1e-12), g)


def step_direction(g, norm):
    """Steepest-ascent direction of unit ``norm``: sign (linf) or normalised gradient (l2)."""
    return ops.sign(g) if norm == "linf" else normalize_l2(g)


def project(x_adv, x0, eps, norm):
    """Onto the ``norm`` ball of radius ``eps`` (a scalar tensor) around ``x0``, then onto [0, 1]."""
    if norm == "linf":
        x_adv = ops.minimum(ops.maximum(x_adv, x0 - eps), x0 + eps)
    else:
        delta = x_adv - x0
        factor = ops.minimum(1.0, eps / ops.maximum(l2(delta), 1e-12))
        x_adv = x0 + delta * bcast(factor, delta)
    return ops.clip(x_adv, 0.0, 1.0)


def predicted(logits):
    """Arg-max class as int32."""
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def success(logits, lab, targeted):
    """Targeted: the prediction is ``lab``; untargeted: it is not."""
    pred = predicted(logits)
    return ops.equal(pred, lab) if targeted else ops.not_equal(pred, lab)


def select(mask, a, b):
    """Per example ``a`` where ``mask`` else ``b`` (``mask`` of shape ``(N,)``)."""
    return ops.where(bcast(mask, a), a, b)
