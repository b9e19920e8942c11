"""The one backend-specific module: losses and their gradients w.r.t. the input.

Everything else in hardened is written with `keras.ops`. Here each backend
gets its own autodiff: `tf.GradientTape`, `jax.grad` over the model's
``stateless_call`` (so random layers' seed states advance correctly), and
`torch.autograd`.
"""

import keras
import numpy as np
from keras import ops

from hardened.layers import randomized_layers


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

        # convert_to_tensor: on Keras' device (CUDA when present), not always the CPU.
        xt = ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
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


# ---------------------------------------------------------------------------
# Compiled, cached variants for the iterative attacks.
#
# ``make_loss_grad`` and ``make_forward`` build a function once per attack run
# and reuse it for every step: a `tf.function` on TensorFlow, a `jax.jit` over
# ``stateless_call`` on JAX (seed states are written back after every call, so
# random layers keep drawing fresh randomness), plain autograd on PyTorch.
# Compiled functions are cached on the model, keyed by the loss and by the
# randomness switches of its random layers (`set_randomness` changes Python
# attributes that a traced function would not see).

_CACHE_ATTR = "_hardened_attack_fn_cache"


def _randomness_key(model):
    return tuple(
        (id(layer), bool(getattr(layer, "randomness", True)), getattr(layer, "fixed_path", None))
        for layer in randomized_layers(model)
    )


def _model_cache(model):
    cache = model.__dict__.get(_CACHE_ATTR)
    if cache is None:
        cache = {}
        # object.__setattr__: bypass Keras/torch attribute tracking (not a weight).
        object.__setattr__(model, _CACHE_ATTR, cache)
    return cache


def clear_cache(model):
    """Drop the compiled attack functions cached on ``model``."""
    if _CACHE_ATTR in model.__dict__:
        model.__dict__[_CACHE_ATTR].clear()


def _to_numpy_args(args):
    return [np.asarray(a, dtype="float32") if not np.isscalar(a) else np.float32(a) for a in args]


def _build_loss_grad(model, loss_fn, training):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def step(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = model(x, training=training)
                losses = loss_fn(logits, *args)
                total = tf.reduce_sum(losses)
            grad = tape.gradient(total, x)
            if grad is None:  # no path from input to loss (decided at trace time)
                grad = tf.zeros_like(x)
            return losses, grad, logits

        def call(x, *args):
            out = step(tf.convert_to_tensor(x), *[tf.convert_to_tensor(a) for a in args])
            return tuple(o.numpy() for o in out)

        return call
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def step(tv, ntv, x, *args):
            def f(xj):
                logits, new_ntv = model.stateless_call(tv, ntv, xj, training=training)
                losses = loss_fn(logits, *args)
                return jnp.sum(losses), (losses, logits, new_ntv)

            grad, (losses, logits, new_ntv) = jax.grad(f, has_aux=True)(x)
            return losses, grad, logits, new_ntv

        jstep = jax.jit(step)

        def call(x, *args):
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            losses, grad, logits, new_ntv = jstep(tv, ntv, jnp.asarray(x), *[jnp.asarray(a) for a in args])
            for var, value in zip(model.non_trainable_variables, new_ntv):
                var.assign(value)
            return np.asarray(losses), np.asarray(grad), np.asarray(logits)

        return call
    if backend == "torch":
        import torch

        def call(x, *args):
            with torch.enable_grad():
                xt = ops.convert_to_tensor(x).detach().requires_grad_(True)
                targs = [ops.convert_to_tensor(a) for a in args]
                logits = model(xt, training=training)
                losses = loss_fn(logits, *targs)
                grad = None
                if losses.requires_grad:
                    grad = torch.autograd.grad(losses.sum(), xt, allow_unused=True)[0]
                if grad is None:
                    grad = torch.zeros_like(xt)
            return (losses.detach().cpu().numpy(), grad.detach().cpu().numpy(), logits.detach().cpu().numpy())

        return call
    raise RuntimeError(f"Input gradients need the tensorflow, jax or torch backend, not {backend!r}.")


def make_loss_grad(model, loss_fn, grad_samples=1, training=False):
    """A reusable ``f(x, *loss_args) -> (losses, grad, logits)`` (numpy in, numpy out).

    Same contract as `loss_and_input_grad`, compiled where the backend allows
    it and cached on the model. With ``grad_samples > 1`` (EOT), losses,
    gradients and logits are averages over that many forward/backward passes,
    each drawing the model's randomness anew.

    Args:
        model: A `keras.Model` returning logits.
        loss_fn: ``loss_fn(logits, *loss_args) -> (N,)`` written with `keras.ops`.
            Use a function with a stable identity (module level) for caching.
        grad_samples: Number of passes to average (1 = plain gradient).
        training: Passed to the model call.
    """
    grad_samples = int(grad_samples)
    if grad_samples < 1:
        raise ValueError(f"grad_samples must be >= 1, got {grad_samples}.")
    key = ("loss_grad", loss_fn, bool(training), _randomness_key(model))
    cache = _model_cache(model)
    single = cache.get(key)
    if single is None:
        single = cache[key] = _build_loss_grad(model, loss_fn, training)

    def call(x, *args):
        x = np.ascontiguousarray(x, dtype="float32")
        args = _to_numpy_args(args)
        total = None
        for _ in range(grad_samples):
            out = single(x, *args)
            total = out if total is None else tuple(a + b for a, b in zip(total, out))
        if grad_samples == 1:
            return total
        return tuple((a / grad_samples).astype("float32") for a in total)

    return call


def _build_forward(model, training):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def fwd(x):
            return model(x, training=training)

        return lambda x: fwd(tf.convert_to_tensor(x)).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def fwd(tv, ntv, x):
            return model.stateless_call(tv, ntv, x, training=training)

        jfwd = jax.jit(fwd)

        def call(x):
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            logits, new_ntv = jfwd(tv, ntv, jnp.asarray(x))
            for var, value in zip(model.non_trainable_variables, new_ntv):
                var.assign(value)
            return np.asarray(logits)

        return call
    if backend == "torch":
        import torch

        def call(x):
            with torch.no_grad():
                return model(ops.convert_to_tensor(x), training=training).detach().cpu().numpy()

        return call
    return lambda x: ops.convert_to_numpy(model(x, training=training))


def make_forward(model, samples=1, training=False, max_batch=None):
    """A reusable ``f(x) -> logits`` (numpy), compiled and cached like `make_loss_grad`.

    Args:
        model: A `keras.Model` returning logits.
        samples: Average the logits over this many forward passes (EOT for
            score-based attacks on randomized models).
        training: Passed to the model call.
        max_batch: Split larger inputs into chunks of this many rows.
    """
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    key = ("forward", bool(training), _randomness_key(model))
    cache = _model_cache(model)
    single = cache.get(key)
    if single is None:
        single = cache[key] = _build_forward(model, training)

    def once(x):
        if max_batch is None or len(x) <= max_batch:
            return single(x)
        return np.concatenate([single(x[i:i + max_batch]) for i in range(0, len(x), max_batch)])

    def call(x):
        x = np.ascontiguousarray(x, dtype="float32")
        total = once(x)
        for _ in range(samples - 1):
            total = total + once(x)
        return total if samples == 1 else (total / samples).astype("float32")

    return call


# ---------------------------------------------------------------------------
# Whole attack iterations as one compiled program.
#
# ``make_step`` compiles ``body(fns, *args)``: one iteration of an attack
# written with `keras.ops`, which asks ``fns.grad`` / ``fns.forward`` for the
# model's input gradients and logits and does the update (Adam, projection,
# best-so-far bookkeeping, a pair search) in the same program. The attack's
# state stays a backend tensor between iterations, so no step leaves the
# backend: a `tf.function` on TensorFlow, a `jax.jit` on JAX (seed states of
# random layers are threaded through and written back after every call), and
# eager torch ops on PyTorch, which has no cheap compiler on the CPU but no
# tracing overhead either.


class StepFns:
    """What an attack body may ask of the model inside a compiled step.

    Attributes:
        grad: ``grad(x, loss_fn, *loss_args) -> (losses, input_grad, logits)``,
            averaged over ``grad_samples`` passes (EOT).
        grads: ``grads(x, loss_fn, weights_list) -> (logits, [input_grad, ...])``:
            one forward pass, one backward pass per weight tensor of
            ``loss_fn(logits, weights)`` (JSMA's two saliency gradients,
            DeepFool's per-class boundary normals).
        forward: ``forward(x) -> logits`` (averaged over ``grad_samples``).
    """

    def __init__(self, grad, grads, forward):
        self.grad, self.grads, self.forward = grad, grads, forward


def _mean(parts):
    if len(parts) == 1:
        return parts[0]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total / float(len(parts))


def _averaged(grads_once, grad_samples):
    """``StepFns.grads`` averaged over ``grad_samples`` passes (EOT)."""
    if grad_samples == 1:
        return grads_once

    def grads(x, loss_fn, weights_list):
        outs = [grads_once(x, loss_fn, weights_list) for _ in range(grad_samples)]
        return (_mean([o[0] for o in outs]),
                [_mean([o[1][k] for o in outs]) for k in range(len(weights_list))])

    return grads


def _tf_fns(model, training, grad_samples):
    import tensorflow as tf

    def grad(x, loss_fn, *args):
        outs = []
        for _ in range(grad_samples):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = model(x, training=training)
                losses = loss_fn(logits, *args)
                total = tf.reduce_sum(losses)
            g = tape.gradient(total, x)
            outs.append((losses, tf.zeros_like(x) if g is None else g, logits))
        return tuple(_mean([o[i] for o in outs]) for i in range(3))

    def grads_once(x, loss_fn, weights_list):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            logits = model(x, training=training)
            totals = [tf.reduce_sum(loss_fn(logits, w)) for w in weights_list]
        out = [tape.gradient(t, x) for t in totals]
        del tape
        return logits, [tf.zeros_like(x) if g is None else g for g in out]

    def forward(x):
        return _mean([model(x, training=training) for _ in range(grad_samples)])

    return StepFns(grad, _averaged(grads_once, grad_samples), forward)


def _torch_fns(model, training, grad_samples):
    import torch

    def grad(x, loss_fn, *args):
        outs = []
        for _ in range(grad_samples):
            with torch.enable_grad():
                xt = x.detach().requires_grad_(True)
                logits = model(xt, training=training)
                losses = loss_fn(logits, *args)
                g = None
                if losses.requires_grad:
                    g = torch.autograd.grad(losses.sum(), xt, allow_unused=True)[0]
            outs.append((losses.detach(), torch.zeros_like(x) if g is None else g, logits.detach()))
        return tuple(_mean([o[i] for o in outs]) for i in range(3))

    def grads_once(x, loss_fn, weights_list):
        with torch.enable_grad():
            xt = x.detach().requires_grad_(True)
            logits = model(xt, training=training)
            out = []
            for k, w in enumerate(weights_list):
                total = loss_fn(logits, w).sum()
                g = None
                if total.requires_grad:
                    g = torch.autograd.grad(total, xt, retain_graph=k + 1 < len(weights_list),
                                            allow_unused=True)[0]
                out.append(torch.zeros_like(x) if g is None else g)
        return logits.detach(), out

    def forward(x):
        with torch.no_grad():
            return _mean([model(x, training=training) for _ in range(grad_samples)])

    return StepFns(grad, _averaged(grads_once, grad_samples), forward)


def _jax_fns(model, training, grad_samples, tv, cell):
    """JAX: ``cell[0]`` carries the non-trainable state (seed generators) through the step."""
    import jax
    import jax.numpy as jnp

    def grad(x, loss_fn, *args):
        outs = []
        for _ in range(grad_samples):
            def f(xj):
                logits, new_ntv = model.stateless_call(tv, cell[0], xj, training=training)
                losses = loss_fn(logits, *args)
                return jnp.sum(losses), (losses, logits, new_ntv)

            g, (losses, logits, new_ntv) = jax.grad(f, has_aux=True)(x)
            cell[0] = new_ntv
            outs.append((losses, g, logits))
        return tuple(_mean([o[i] for o in outs]) for i in range(3))

    def grads_once(x, loss_fn, weights_list):
        def f(xj):
            logits, new_ntv = model.stateless_call(tv, cell[0], xj, training=training)
            return logits, new_ntv

        logits, vjp, new_ntv = jax.vjp(f, x, has_aux=True)
        cell[0] = new_ntv
        out = []
        for w in weights_list:
            # d sum(loss_fn(z, w)) / dz, pulled back through the one forward pass.
            cot = jax.grad(lambda z: jnp.sum(loss_fn(z, w)))(logits)
            out.append(vjp(cot)[0])
        return logits, out

    def forward(x):
        parts = []
        for _ in range(grad_samples):
            logits, cell[0] = model.stateless_call(tv, cell[0], x, training=training)
            parts.append(logits)
        return _mean(parts)

    return StepFns(grad, _averaged(grads_once, grad_samples), forward)


def make_step(model, key, body, grad_samples=1, training=False):
    """Compile one attack iteration ``body(fns, *args) -> tuple of tensors``, cached on the model.

    Args:
        model: A `keras.Model` returning logits.
        key: Hashable identity of ``body``'s static configuration (attack,
            loss, norm, ...): the compiled step is reused for every call with
            the same key, so ``body`` may only close over what the key names.
        body: ``body(fns, *args)`` written with `keras.ops`; ``fns`` is a
            `StepFns`; ``args`` are backend tensors; returns a tuple of tensors.
        grad_samples: Passes averaged per gradient and per forward (EOT).
        training: Passed to the model calls.

    Returns:
        ``call(*args) -> tuple`` of backend tensors. Convert inputs once with
        `to_tensor` and results with `to_numpy`.
    """
    grad_samples = int(grad_samples)
    if grad_samples < 1:
        raise ValueError(f"grad_samples must be >= 1, got {grad_samples}.")
    cache_key = ("step", key, int(grad_samples), bool(training), _randomness_key(model))
    cache = _model_cache(model)
    if cache_key in cache:
        return cache[cache_key]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fns = _tf_fns(model, training, grad_samples)
        call = tf.function(lambda *args: tuple(body(fns, *args)), reduce_retracing=True)
    elif backend == "jax":
        import jax

        def step(tv, ntv, *args):
            cell = [ntv]
            out = tuple(body(_jax_fns(model, training, grad_samples, tv, cell), *args))
            return out, cell[0]

        jstep = jax.jit(step)

        def call(*args):
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            out, new_ntv = jstep(tv, ntv, *args)
            for var, value in zip(model.non_trainable_variables, new_ntv):
                var.assign(value)
            return out
    elif backend == "torch":
        import torch

        fns = _torch_fns(model, training, grad_samples)

        def call(*args):
            with torch.no_grad():
                return tuple(body(fns, *args))
    else:  # pragma: no cover - numpy/openvino backends have no autodiff
        raise RuntimeError(f"Input gradients need the tensorflow, jax or torch backend, not {backend!r}.")
    cache[cache_key] = call
    return call


def to_tensor(value, dtype="float32"):
    """A numpy array (or scalar) as a backend tensor of ``dtype``."""
    return ops.convert_to_tensor(np.asarray(value, dtype=dtype))


def to_numpy(*tensors):
    """Backend tensors as numpy arrays (one array for one tensor)."""
    out = tuple(ops.convert_to_numpy(t) for t in tensors)
    return out[0] if len(out) == 1 else out
