"""Example instances for the contract test suites (scikit-learn's parametrize_with_checks idea).

Every layer registered under the ``hardened`` package must have an entry in
`LAYER_EXAMPLES`; the contract suite fails on a registered layer without one,
so a new layer cannot skip the checks.
"""

import keras

from hardened import layers as L

#: Registered class name -> (factory returning a fresh layer, per-example input shape).
LAYER_EXAMPLES = {
    "HashedDense": (lambda: L.HashedDense(16, compression=1 / 8, seed=1, activation="relu", name="hd"), (12,)),
    "HashedConv2D": (lambda: L.HashedConv2D(4, 3, padding="same", compression=1 / 4, seed=2, name="hc"), (6, 6, 3)),
    "PrunableDense": (lambda: L.PrunableDense(8, activation="tanh", name="pd"), (5,)),
    "PrunableConv2D": (lambda: L.PrunableConv2D(4, 3, name="pc"), (6, 6, 2)),
    "GIView": (lambda: L.GIView(keras.layers.Dense(8, name="inner"), "gi3", 0.3, seed=4, name="giv"), (5,)),
    "RandomSwitch": (
        lambda: L.RandomSwitch(
            [keras.Sequential([keras.layers.Dense(6, activation="relu", name="d")], name=f"path{i}")
             for i in range(3)], seed=5, name="switch"),
        (4,),
    ),
    "DefensiveDropout": (lambda: L.DefensiveDropout(0.3, seed=6, name="dd"), (10,)),
    "GaussianNoiseInjection": (lambda: L.GaussianNoiseInjection(0.1, seed=7, name="gn"), (10,)),
    "StochasticActivationPruning": (lambda: L.StochasticActivationPruning(1.0, seed=8, name="sap"), (10,)),
    "DecoderUp": (lambda: L.DecoderUp(8, 3, name="up"), (4, 4, 6)),
    "DecoderSkip": (lambda: L.DecoderSkip(8, 3, name="skip"), (8, 8, 6)),
    "BitDepthReduction": (lambda: L.BitDepthReduction(3, name="bit_depth"), (6, 6, 3)),
    "MedianSmoothing": (lambda: L.MedianSmoothing(2, name="median"), (6, 6, 3)),
    # The test-time flip pair changes the batch size on its own (2n images in, n logits out): checked together.
    "FlipBatch": (lambda: _flip_tta(), (6, 6, 3)),
    "MeanOfHalves": (lambda: _flip_tta(), (6, 6, 3)),
}


def _flip_tta():
    return keras.Sequential([L.FlipBatch(name="tta_flip"), keras.layers.Conv2D(2, 3, name="conv"),
                             L.MeanOfHalves(name="tta_mean")], name="flip_tta")


def registered_layer_names():
    """Names of all layer classes registered under the ``hardened`` package."""
    objs = keras.saving.get_custom_objects()
    return sorted(
        name.split(">", 1)[1] for name, obj in objs.items()
        if name.startswith("hardened>") and isinstance(obj, type) and issubclass(obj, keras.layers.Layer)
    )
