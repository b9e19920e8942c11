"""hardened: a Keras 3 multi-backend zoo of adversarially defended image classifiers.

Public entry points::

    hardened.save_pretrained(model, "folder")
    model = hardened.load_pretrained("folder")
    hardened.layers.HashedDense(512, compression=1 / 64)
    (x, y), (xt, yt) = hardened.data.load_dataset("mnist")
"""

__version__ = "0.1.0"

from hardened import layers  # noqa: E402,F401  (registers the custom layers)
from hardened.validation import check_images  # noqa: E402
from hardened.zoo.checkpoint import IntegrityError, load_pretrained, save_pretrained  # noqa: E402

__all__ = ["IntegrityError", "check_images", "evaluate", "layers", "load_pretrained", "save_pretrained",
           "__version__"]


def __getattr__(name):
    # Lazy: attacks, tqdm and matplotlib load only when an evaluation runs.
    if name == "evaluate":
        from hardened.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'hardened' has no attribute {name!r}")
