"""The compute floor of an attack step: raw model passes in the backend's own autodiff.

An attack iteration cannot cost less than the model passes it needs: one
forward and one backward pass for a loss gradient (PGD, C&W, EAD's slack
point, JSMA-F, whose two saliency terms come from one gradient because the
probabilities sum to one), one more backward pass for a second gradient of the
same forward (JSMA-Z's target and other-class logits), one more forward pass
for an iterate that is not the point where the gradient was taken (EAD checks
its FISTA iterate). `passes` builds exactly those passes, compiled where our
attacks compile (``tf.function`` on TensorFlow, ``jax.jit`` on JAX, eager torch),
with nothing else in the loop, so ``attack time / (steps x passes)`` is the
attack's overhead over what any implementation must pay.
"""

import numpy as np


def passes(model, x, y, backwards=1, extra_forward=False):
    """A zero-argument callable running one forward, ``backwards`` backward passes and optionally a forward.

    Args:
        model: A `keras.Model` returning logits.
        x: Input batch (numpy).
        y: Integer labels of the batch (the CE loss of the first gradient).
        backwards: 1 or 2 input gradients of the same forward pass.
        extra_forward: Also one forward pass at another point (``x`` reversed
            along the batch, so that no compiler can reuse the first forward).
    """
    import keras

    backend = keras.backend.backend()
    y = np.asarray(y, np.int32)
    x2 = np.ascontiguousarray(x[::-1])
    other = np.eye(int(model.outputs[0].shape[-1]), dtype=np.float32)[(y + 1) % model.outputs[0].shape[-1]]
    if backend == "torch":
        import torch

        xt, x2t, yt, wt = torch.tensor(x), torch.tensor(x2), torch.tensor(y, dtype=torch.long), torch.tensor(other)

        def run():
            xg = xt.clone().requires_grad_(True)
            logits = model(xg, training=False)
            loss = torch.nn.functional.cross_entropy(logits, yt, reduction="sum")
            torch.autograd.grad(loss, xg, retain_graph=backwards > 1)
            if backwards > 1:
                torch.autograd.grad((logits * wt).sum(), xg)
            if extra_forward:
                with torch.no_grad():
                    model(x2t, training=False)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(xv, x2v, yv, wv):
            with tf.GradientTape(persistent=backwards > 1) as tape:
                tape.watch(xv)
                logits = model(xv, training=False)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(yv, logits))
                second = tf.reduce_sum(logits * wv)
            out = [tape.gradient(loss, xv)]
            if backwards > 1:
                out.append(tape.gradient(second, xv))
            if extra_forward:
                out.append(model(x2v, training=False))
            return out

        xv, x2v, yv, wv = tf.constant(x), tf.constant(x2), tf.constant(y), tf.constant(other)
        return lambda: [t.numpy() for t in step(xv, x2v, yv, wv)]
    import jax
    import jax.numpy as jnp

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def step(xv, x2v, tv, ntv, yv, wv):  # weights as arguments, as in our attacks (no constant folding)
        def f(v):
            return model.stateless_call(tv, ntv, v, training=False)[0]

        logits, vjp = jax.vjp(f, xv)
        probs = jax.nn.softmax(logits)
        onehot = jax.nn.one_hot(yv, logits.shape[-1])
        out = [vjp(probs - onehot)[0]]  # d CE / d logits = softmax - onehot
        if backwards > 1:
            out.append(vjp(wv)[0])
        if extra_forward:
            out.append(f(x2v))
        return out

    jstep = jax.jit(step)
    xv, x2v, yv, wv = jnp.asarray(x), jnp.asarray(x2), jnp.asarray(y), jnp.asarray(other)
    return lambda: [t.block_until_ready() for t in jstep(xv, x2v, tv, ntv, yv, wv)]


def repeat(fn, times):
    """``fn`` called ``times`` times, as one callable."""

    def run():
        for _ in range(times):
            fn()

    return run
