"""Test-time flip averaging inside a model (airbench's TTA), as two layers around its body.

``FlipBatch`` at the input appends the horizontally flipped images to the
batch, ``MeanOfHalves`` at the output averages the logits of each image and
its mirror. Both are the identity while training, so the network trains on
single views and a released model's prediction *is* the averaged one: every
attack differentiates through the average, as it must (a defense evaluated
without its test-time augmentation would be a different model). The batch
trick keeps one functional graph, so weight paths stay those of the body.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="hardened")
class FlipBatch(keras.layers.Layer):
    """``concat([x, flip(x)])`` along the batch at inference; the identity while training."""

    def call(self, x, training=None):
        if training:
            return x
        return ops.concatenate([x, ops.flip(x, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="hardened")
class MeanOfHalves(keras.layers.Layer):
    """Mean of the two halves of the batch (an image's and its mirror's logits) at inference."""

    def call(self, x, training=None):
        if training:
            return x
        n = ops.shape(x)[0] // 2
        return 0.5 * (x[:n] + x[n:])

    def compute_output_shape(self, input_shape):
        return input_shape
