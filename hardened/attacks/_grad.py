"""The one backend-specific module: losses and their gradients w.r.t. the input.

Everything else in hardened is written with `keras.ops`. Here each backend
gets its own autodiff: `tf.GradientTape`, `jax.grad` over the model's
``stateless_call`` (so random layers' seed states advance correctly), and
`torch.autograd`.
"""

import keras
import numpy as np
from keras import ops


def loss_and_input_grad(model, x, loss_fn, *loss_args, training=False):
    """Per-example losses and the gradient of their sum w.r.t. the input.

    Args:
        model: A `keras.Model` returning logits.
        x: Input batch (numpy or backend tensor).
        loss_fn: ``loss_fn(logits, *loss_args) -> (N,)`` written with `keras.ops`.
        *loss_args: Extra tensors for the loss (labels, targets, ...).
        training: Passed to the model call.

    Returns:
        ``(losses, grad, logits)`` as numpy arrays.
    """
    backend = keras.backend.backend()
    x = np.asarray(x, dtype="float32")
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            logits = model(xt, training=training)
            losses = loss_fn(logits, *loss_args)
            total = tf.reduce_sum(losses)
        grad = tape.gradient(total, xt)
        if grad is None:  # no path from input to loss
            grad = tf.zeros_like(xt)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def f(xj):
            logits, new_ntv = model.stateless_call(tv, ntv, xj, training=training)
            losses = loss_fn(logits, *loss_args)
            return jnp.sum(losses), (losses, logits, new_ntv)

        grad, (losses, logits, new_ntv) = jax.grad(f, has_aux=True)(jnp.asarray(x))
        for var, value in zip(model.non_trainable_variables, new_ntv):
            var.assign(value)
    elif backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        logits = model(xt, training=training)
        losses = loss_fn(logits, *loss_args)
        if losses.requires_grad:
            grad = torch.autograd.grad(losses.sum(), xt, allow_unused=True)[0]
        else:
            grad = None
        if grad is None:
            grad = torch.zeros_like(xt)
        losses, logits = losses.detach(), logits.detach()
    else:  # pragma: no cover - numpy/openvino backends have no autodiff
        raise RuntimeError(f"Input gradients need the tensorflow, jax or torch backend, not {backend!r}.")
    return ops.convert_to_numpy(losses), ops.convert_to_numpy(grad), ops.convert_to_numpy(logits)


def input_grad(model, x, loss_fn, *loss_args, training=False):
    """Just the gradient of `loss_and_input_grad`."""
    return loss_and_input_grad(model, x, loss_fn, *loss_args, training=training)[1]
