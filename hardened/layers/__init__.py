"""Custom Keras layers and weight views of the defenses (registered serializable)."""

from hardened.layers.defendpp import DecoderSkip, DecoderUp, dct_lowpass_targets
from hardened.layers.gi import (
    GI_METHODS,
    PAPER_EPSILON,
    GIView,
    apply_gi,
    gi_transform,
    logits_augmentation,
    remove_gi,
)
from hardened.layers.hashed import HashedConv2D, HashedDense, hash_tables
from hardened.layers.pruning import (
    PrunableConv2D,
    PrunableDense,
    iterative_pruning,
    prune_by_magnitude,
    sparsity_report,
)
from hardened.layers.squeeze import (
    BitDepthReduction,
    InputTransform,
    MedianSmoothing,
    input_transform_layers,
    input_transform_view,
    quantize_weights,
)
from hardened.layers.stochastic import (
    DefensiveDropout,
    GaussianNoiseInjection,
    StochasticActivationPruning,
    randomized_layers,
    sap_view,
    set_randomness,
)
from hardened.layers.switch import RandomSwitch
from hardened.layers.tta import FlipBatch, MeanOfHalves

__all__ = [
    "BitDepthReduction", "InputTransform", "MedianSmoothing", "input_transform_layers", "input_transform_view",
    "quantize_weights",
    "DecoderSkip", "DecoderUp", "DefensiveDropout", "FlipBatch", "MeanOfHalves", "GIView", "GI_METHODS", "GaussianNoiseInjection",
    "HashedConv2D", "HashedDense", "PAPER_EPSILON", "PrunableConv2D", "PrunableDense", "RandomSwitch",
    "StochasticActivationPruning", "apply_gi", "dct_lowpass_targets", "gi_transform", "hash_tables",
    "iterative_pruning", "logits_augmentation", "prune_by_magnitude", "randomized_layers", "remove_gi",
    "sap_view", "set_randomness", "sparsity_report",
]
