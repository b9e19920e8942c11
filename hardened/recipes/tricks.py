"""airbench's training tricks (Jordan 2024, arXiv 2404.00498) as Keras pieces `fit_model` can switch on.

* `ScaledSGD`: SGD whose step on chosen variables is ``scale`` times larger
  (airbench trains BatchNorm biases at 64x the learning rate). SGD with
  momentum is linear in the gradient, so scaling the gradient is scaling
  the learning rate; Keras' decoupled weight decay (``lr x wd x w``) stays
  unscaled, which is airbench's pairing (its bias group's weight decay is
  divided by the same 64).
* `Lookahead`: every ``every`` steps the weights move to an exponential
  moving average of themselves, ``ema <- d ema + (1 - d) w; w <- ema``, with
  ``d = decay x (step / total) ** power`` (airbench: 0.95 ** 5, every 5
  steps, power 3), and once more after each epoch's last batch, so that the
  average equals the weights at every epoch boundary and a run resumed by
  `keras.callbacks.BackupAndRestore` needs no extra state.
* `dirac_init`: airbench's initialisation of its 3x3 convs: the first
  ``in_channels`` filters of each conv pass their input channel through
  unchanged (a Dirac delta), the others keep their random initialisation.
* `alternating_flips`: airbench's "alternating flip" augmentation: random
  horizontal flips in the first epoch, then each image flipped exactly when
  it was not in the epoch before, so every pair of epochs sees both views.
"""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="hardened")
class ScaledSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` with a per-variable step multiplier.

    Args:
        scaled_paths: Paths (``variable.path``) of the variables whose step is
            multiplied by ``scale``.
        scale: The multiplier.
        **kwargs: `keras.optimizers.SGD` arguments.
    """

    def __init__(self, *args, scaled_paths=(), scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.scaled_paths = tuple(scaled_paths)
        self.scale = float(scale)

    def apply(self, grads, trainable_variables=None):
        variables = self._trainable_variables if trainable_variables is None else trainable_variables
        paths = set(self.scaled_paths)
        if self.scale != 1.0 and paths:
            grads = [g if g is None or v.path not in paths else g * self.scale for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "scaled_paths": list(self.scaled_paths), "scale": self.scale}


def batchnorm_betas(model):
    """The ``beta`` variables of every BatchNormalization layer of ``model`` (nested models included)."""
    return [layer.beta for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.center]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


class Lookahead(keras.callbacks.Callback):
    """airbench's lookahead: weights pulled to their running average every few steps (see the module doc).

    Args:
        total_steps: Optimizer steps of the whole run (the decay's ramp).
        every: Steps between two updates.
        decay: Largest decay, reached at the last step.
        power: The ramp ``(step / total) ** power``.
    """

    def __init__(self, total_steps, every=5, decay=0.95 ** 5, power=3.0):
        super().__init__()
        self.total_steps = max(int(total_steps), 1)
        self.every = int(every)
        self.decay = float(decay)
        self.power = float(power)
        self._ema = None
        self._step = 0

    def _variables(self):
        # Trainable weights and BatchNorm statistics, as airbench's state_dict(); not the step counters.
        return [v for v in self.model.weights if "float" in str(v.dtype)]

    def _update(self):
        if hasattr(self.model, "jax_state_sync"):
            # JAX's fit keeps the weights outside the variables between steps; fetch them (and let the next
            # step read the assigned values back).
            self.model.jax_state_sync()
        variables = self._variables()
        values = [keras.ops.convert_to_numpy(v.value).astype(np.float32) for v in variables]
        if self._ema is None:
            self._ema = values
            return
        d = self.decay * min(self._step / self.total_steps, 1.0) ** self.power
        for i, (var, value) in enumerate(zip(variables, values)):
            self._ema[i] = d * self._ema[i] + (1.0 - d) * value
            var.assign(self._ema[i].astype(keras.backend.standardize_dtype(var.dtype)))

    def on_train_begin(self, logs=None):
        # The current weights (fresh or restored) start the average; the step count from the optimizer.
        self._ema = None
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._update()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        # Also after an epoch's last batch, before validation and before BackupAndRestore saves.
        if self._step % self.every == 0 or batch + 1 == self.params.get("steps"):
            self._update()


def alternating_flips(n, epoch, seed):
    """Which of ``n`` images to flip in ``epoch``: random in epoch 0, then alternating per image."""
    first = np.random.default_rng([int(seed), 0, 7]).random(n) < 0.5
    return first if epoch % 2 == 0 else ~first


def dirac_init(model, skip=()):
    """Set the first ``in_channels`` filters of every plain `keras.layers.Conv2D` of ``model`` to identities.

    Args:
        model: A built model.
        skip: Names of conv layers to leave alone.

    Returns:
        The names of the layers changed.
    """
    changed = []
    for layer in _all_layers(model):
        if type(layer) is not keras.layers.Conv2D or layer.name in skip:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel.value).copy()
        kh, kw, cin, cout = kernel.shape
        k = min(cin, cout)
        kernel[:, :, :, :k] = 0.0
        kernel[kh // 2, kw // 2, np.arange(k), np.arange(k)] = 1.0
        layer.kernel.assign(kernel)
        changed.append(layer.name)
    return changed
