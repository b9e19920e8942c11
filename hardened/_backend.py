"""The few backend-specific helpers outside the attacks' autodiff module."""

import keras


def concrete_int(x):
    """``int(x)`` if ``x`` is a concrete (eager) value, else ``None`` (traced/symbolic)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    try:
        return int(keras.ops.convert_to_numpy(x))
    except Exception:  # symbolic tensors of any other kind
        return None
