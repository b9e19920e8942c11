"""Model builders: functional Keras models (images in [0, 1], NHWC -> logits).

Every builder has the signature
``builder(input_shape=..., num_classes=10, defense=None, **arch_kwargs)``,
where ``defense`` is the head spec of `hardened.models.heads`. Use
`build_model` to build by name, and `TEST_CONFIGS` for tiny variants that run
a forward and backward pass in well under a second on a CPU.
"""

import difflib
import warnings

from hardened.models._common import stage_outputs
from hardened.models.cnn import cnn7, cwcnn, hashnet_cnn, hrs_cnn, hrs_path_model, hrs_switches
from hardened.models.fastcnn import fastcnn
from hardened.models.heads import classifier_head, normalize_defense
from hardened.models.inception import inception_v3
from hardened.models.resnet import resnet18, resnet34, resnet50, resnet101
from hardened.models.vgg import vgg16, vgg19

# Name -> builder. The registry is data: add an entry (and a test config) per builder.
BUILDERS = {
    "cnn7": cnn7,
    "hashnet_cnn": hashnet_cnn,
    "cwcnn": cwcnn,
    "fastcnn": fastcnn,
    "hrs_cnn": hrs_cnn,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "inception_v3": inception_v3,
}

#: Names the builders had before issue 20 (one name per architecture) -> their names now. Checkpoints released
#: before the rename store the old names in their metadata (`canonical_builder` reads them without a warning);
#: code that types them gets a DeprecationWarning from `get_builder` and attribute access.
DEPRECATED_NAMES = {"seed_cnn7": "cnn7", "cw_cnn": "cwcnn"}

# Builders whose head has a single FC layer: hashed/stochastic defenses need
# ``extra_fc`` (seed 000 uses 512).
SINGLE_FC = frozenset({"resnet18", "resnet34", "resnet50", "resnet101", "inception_v3"})

# Tiny variants for tests and contract suites: same layer graph, few channels.
TEST_CONFIGS = {
    "cnn7": {"input_shape": (28, 28, 1)},
    "hashnet_cnn": {"input_shape": (28, 28, 1), "fc_units": 32},
    "cwcnn": {"input_shape": (28, 28, 1), "widths": (8, 8, 16, 16, 32, 32)},
    "fastcnn": {"input_shape": (32, 32, 3), "width": 0.0625, "hidden": (16, 16)},
    "hrs_cnn": {"input_shape": (28, 28, 1), "widths": (4, 4, 8, 8, 16, 16), "channels": (3, 2)},
    "vgg16": {"input_shape": (32, 32, 3), "width": 0.0625},
    "vgg19": {"input_shape": (32, 32, 3), "width": 0.0625},
    "resnet18": {"input_shape": (32, 32, 3), "width": 0.0625},
    "resnet34": {"input_shape": (32, 32, 3), "width": 0.0625},
    "resnet50": {"input_shape": (32, 32, 3), "width": 0.0625},
    "resnet101": {"input_shape": (32, 32, 3), "width": 0.0625},
    "inception_v3": {"input_shape": (75, 75, 3), "width": 0.0625, "num_classes": 10},
}


def list_builders():
    """Names of the registered builders, sorted."""
    return sorted(BUILDERS)


def canonical_builder(name):
    """The current name of a builder name, old spellings included (no warning: for names read from stored files)."""
    return DEPRECATED_NAMES.get(name, name)


def _warn_renamed(name):
    warnings.warn(f"The builder {name!r} is now called {DEPRECATED_NAMES[name]!r}; the old name will be removed.",
                  DeprecationWarning, stacklevel=3)


def get_builder(name):
    """The builder registered as ``name`` (ValueError with suggestions if unknown; old names warn)."""
    if isinstance(name, str) and name in DEPRECATED_NAMES:
        _warn_renamed(name)
        name = DEPRECATED_NAMES[name]
    if not isinstance(name, str) or name not in BUILDERS:
        hint = difflib.get_close_matches(str(name), list(BUILDERS), n=3)
        raise ValueError(
            f"Unknown model {name!r}. "
            + (f"Did you mean {' or '.join(repr(h) for h in hint)}? " if hint else "")
            + f"Known models: {', '.join(list_builders())}."
        )
    return BUILDERS[name]


def build_model(name, **kwargs):
    """Build the registered model ``name``.

    Args:
        name: A key of `BUILDERS`, e.g. ``"resnet50"``.
        **kwargs: Passed to the builder (``input_shape``, ``num_classes``,
            ``defense``, architecture arguments).

    Returns:
        A functional `keras.Model` returning logits.

    Example:
        >>> model = build_model("cnn7", input_shape=(28, 28, 1))
        >>> model.output_shape
        (None, 10)
    """
    return get_builder(name)(**kwargs)


def __getattr__(name):
    # hardened.models.seed_cnn7 / cw_cnn: the renamed builders, with a warning.
    if name in DEPRECATED_NAMES:
        _warn_renamed(name)
        return BUILDERS[DEPRECATED_NAMES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILDERS", "DEPRECATED_NAMES", "SINGLE_FC", "TEST_CONFIGS", "build_model", "canonical_builder",
    "classifier_head", "cwcnn", "fastcnn", "get_builder",
    "hashnet_cnn", "hrs_cnn", "hrs_path_model", "hrs_switches", "inception_v3", "list_builders",
    "normalize_defense", "resnet18", "resnet34", "resnet50", "resnet101", "cnn7", "stage_outputs",
    "vgg16", "vgg19",
]
