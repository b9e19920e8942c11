"""Data-parallel training through the backend's own engine.

``with data_parallel(devices):`` everything a recipe does inside — build the
model, compile, fit — runs one replica per device, each on a slice of the
global batch, gradients averaged across the replicas (all-reduce):

* **JAX**: `keras.distribution.DataParallel` is set as the global
  distribution (the previous one is restored on exit). Variables created
  inside are replicated on every device and each batch is sharded along its
  first axis; XLA inserts the all-reduce.
* **TensorFlow**: a `tf.distribute.MirroredStrategy` scope. Models built
  inside have `MirroredVariable`s; `fit` splits each batch across replicas.
* **torch**: not supported — torch's DistributedDataParallel needs one
  process per device (``torchrun``), which Keras' torch trainer does not
  drive. Use JAX or TensorFlow.

Both engines need every batch divisible by the number of replicas; `fit_model`
asks `replica_count` and trims the last, ragged batch (and the monitoring
set) to a multiple of it. The batch size stays the *global* batch size, so a
data-parallel run follows the same optimisation path as a single-device run.

Example::

    with data_parallel():                       # all devices
        model = build_model("fastcnn", input_shape=(32, 32, 3))
        fit_model(model, train, test, "runs/x", epochs=15, batch_size=512)
"""

import contextlib

import keras


def _backend():
    return keras.backend.backend()


def _tf_default_devices():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


@contextlib.contextmanager
def data_parallel(devices=None):
    """Context in which models are built, compiled and trained data-parallel.

    Args:
        devices: Devices to replicate over. JAX: ``jax.Device`` objects or
            Keras device strings such as ``"cpu:0"`` (default: all of
            `keras.distribution.list_devices()`). TensorFlow: device names
            such as ``"/gpu:0"`` or ``"/cpu:1"`` (default: all logical GPUs,
            else all logical CPUs).

    Yields:
        The `keras.distribution.DataParallel` (JAX) or the
        `tf.distribute.MirroredStrategy` (TensorFlow) in force.

    Raises:
        NotImplementedError: On the torch backend.
    """
    backend = _backend()
    if backend == "jax":
        previous = keras.distribution.distribution()
        dist = keras.distribution.DataParallel(devices=list(devices) if devices is not None else None)
        keras.distribution.set_distribution(dist)
        try:
            yield dist
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(list(devices) if devices is not None else _tf_default_devices())
        with strategy.scope():
            yield strategy
    elif backend == "torch":
        raise NotImplementedError(
            "Data-parallel training is not available on the torch backend: torch's DistributedDataParallel needs "
            "one process per device (torchrun), which Keras' torch trainer does not drive. Use KERAS_BACKEND=jax "
            "(keras.distribution.DataParallel) or KERAS_BACKEND=tensorflow (tf.distribute.MirroredStrategy)."
        )
    else:
        raise NotImplementedError(f"Data-parallel training is not available on the {backend!r} backend.")


def replica_count(model=None):
    """Replicas each batch is split over: 1 outside `data_parallel`.

    Args:
        model: On TensorFlow, the strategy the model was built under is used
            when given (so `fit_model` may be called outside the scope).
    """
    backend = _backend()
    if backend == "jax":
        dist = keras.distribution.distribution()
        if dist is None:
            return 1
        mesh = dist.device_mesh
        sizes = dict(zip(mesh.axis_names, mesh.shape))
        return int(sizes.get(dist.batch_dim_name, 1))
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = getattr(model, "_distribute_strategy", None) if model is not None else None
        if strategy is None:
            strategy = tf.distribute.get_strategy()
        return int(strategy.num_replicas_in_sync)
    return 1


def model_scope(model):
    """The scope the model's training must run in: its TF strategy's scope, else a no-op."""
    strategy = getattr(model, "_distribute_strategy", None) if _backend() == "tensorflow" else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
