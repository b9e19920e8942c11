"""Magnitude pruning (Han et al., 2015) with masks kept as layer state.

`PrunableDense` and `PrunableConv2D` behave exactly like `Dense` and `Conv2D`
with a non-trainable 0/1 ``mask`` of the kernel's shape applied in ``call``.
The mask is saved with the checkpoint (it records which weights were pruned,
which cannot be recovered once retraining has moved the rest).
"""

import keras
import numpy as np
from keras import ops

from hardened.layers.stochastic import _walk


class _MaskMixin:
    is_prunable = True

    def _build_mask(self):
        self.mask = self.add_weight(
            name="mask", shape=self.kernel.shape, initializer="ones", trainable=False
        )

    # Dense/Conv2D save only kernel and bias in Keras' own weight files (save_weights, BackupAndRestore,
    # .keras); the generic Layer versions save every variable, the mask included.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def masked_kernel(self, kernel=None):
        kernel = self.kernel if kernel is None else kernel
        return kernel * ops.cast(self.mask, kernel.dtype)


@keras.saving.register_keras_serializable(package="hardened")
class PrunableDense(_MaskMixin, keras.layers.Dense):
    """`keras.layers.Dense` with a magnitude-pruning mask on its kernel."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def call(self, inputs, training=None):
        kernel = ops.cast(self.masked_kernel(), self.compute_dtype)
        outputs = ops.matmul(inputs, kernel)
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="hardened")
class PrunableConv2D(_MaskMixin, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a magnitude-pruning mask on its kernel."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def call(self, inputs):
        kernel = ops.cast(self.masked_kernel(), self.compute_dtype)
        outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            shape = (1, 1, 1, self.filters) if self.data_format == "channels_last" else (1, self.filters, 1, 1)
            outputs = outputs + ops.reshape(ops.cast(self.bias, outputs.dtype), shape)
        return self.activation(outputs) if self.activation is not None else outputs


def prunable_layers(model):
    """Layers of ``model`` (nested included) that carry a pruning mask."""
    return [layer for layer in _walk(model) if getattr(layer, "is_prunable", False)]


def prune_by_magnitude(model, dense_fraction=0.1, conv_fraction=0.05):
    """One pruning round: mask the smallest ``fraction`` of each layer's *remaining* weights.

    Seed 002 prunes 10 % of the remaining FC weights and 5 % of the remaining
    conv weights per round. Pruned kernel entries are also set to zero, so the
    stored kernel itself is sparse.

    Returns:
        Dict layer name -> fraction of the layer's kernel now non-zero.
    """
    for name, frac in (("dense_fraction", dense_fraction), ("conv_fraction", conv_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}.")
    density = {}
    for layer in prunable_layers(model):
        frac = conv_fraction if isinstance(layer, keras.layers.Conv2D) else dense_fraction
        kernel = ops.convert_to_numpy(layer.kernel)
        mask = ops.convert_to_numpy(layer.mask).astype(bool)
        remaining = np.abs(kernel[mask])
        n_prune = int(np.floor(frac * remaining.size))
        if n_prune > 0:
            threshold = np.partition(remaining, n_prune - 1)[n_prune - 1]
            candidates = np.argwhere(mask & (np.abs(kernel) <= threshold))
            # Ties at the threshold: prune exactly n_prune, in index order.
            flat = np.ravel_multi_index(candidates.T, kernel.shape)
            order = np.argsort(np.abs(kernel).ravel()[flat], kind="stable")[:n_prune]
            new_mask = mask.ravel().copy()
            new_mask[flat[order]] = False
            mask = new_mask.reshape(kernel.shape)
        layer.mask.assign(mask.astype(np.float32))
        layer.kernel.assign(kernel * mask)
        density[layer.name] = float(mask.mean())
    return density


def iterative_pruning(model, retrain, rounds=20, dense_fraction=0.1, conv_fraction=0.05,
                      start_round=0, on_round_end=None):
    """Seed 002's schedule: ``rounds`` times prune by magnitude, then retrain.

    Args:
        model: A model with `PrunableDense` / `PrunableConv2D` layers.
        retrain: Callable ``retrain(model, round_index)`` that fine-tunes in place.
        rounds: Number of prune-and-retrain rounds.
        dense_fraction, conv_fraction: Share of remaining weights pruned per round.
        start_round: Round to resume from (rounds before it are skipped).
        on_round_end: Optional ``callback(round_index, density_dict)``, e.g. to
            save a resumable checkpoint.

    Returns:
        List of per-round density dicts.
    """
    history = []
    for r in range(start_round, rounds):
        density = prune_by_magnitude(model, dense_fraction, conv_fraction)
        retrain(model, r)
        # Retraining cannot revive pruned weights (their gradient is masked),
        # but optimizers with weight decay could move them: re-zero them.
        for layer in prunable_layers(model):
            layer.kernel.assign(ops.convert_to_numpy(layer.kernel) * ops.convert_to_numpy(layer.mask))
        history.append(density)
        if on_round_end is not None:
            on_round_end(r, density)
    return history


def sparsity_report(model):
    """Non-zero and total kernel weights of the prunable layers, and the compression."""
    total = nonzero = 0
    per_layer = {}
    for layer in prunable_layers(model):
        mask = ops.convert_to_numpy(layer.mask)
        per_layer[layer.name] = {"nonzero": int(mask.sum()), "total": int(mask.size)}
        total += mask.size
        nonzero += int(mask.sum())
    return {
        "layers": per_layer,
        "nonzero": nonzero,
        "total": int(total),
        "compression": (total / nonzero) if nonzero else float("inf"),
    }
