"""hardened: a Keras 3 multi-backend zoo of adversarially defended image classifiers.

Public entry points::

    hardened.save_pretrained(model, "folder")
    model = hardened.load_pretrained("folder")
    model = hardened.from_pretrained("hash-gi3-mnist")     # zoo name (see hardened.list_models())
    hardened.layers.HashedDense(512, compression=1 / 64)
    (x, y), (xt, yt) = hardened.data.load_dataset("mnist")
"""

__version__ = "0.1.0"

from hardened import layers  # noqa: E402,F401  (registers the custom layers)
from hardened.validation import check_images  # noqa: E402
from hardened.zoo.checkpoint import IntegrityError, load_pretrained, save_pretrained  # noqa: E402

__all__ = ["IntegrityError", "check_images", "evaluate", "from_pretrained", "layers", "list_models",
           "load_pretrained", "model_info", "push_to_hub", "save_pretrained", "__version__"]

_ZOO = ("from_pretrained", "list_models", "model_info", "push_to_hub")


def __getattr__(name):
    # Lazy: attacks, tqdm and matplotlib load only when an evaluation runs.
    if name == "evaluate":
        from hardened.evaluation import evaluate

        return evaluate
    if name in _ZOO:
        # huggingface_hub itself is imported only inside these functions, when the Hub is used.
        import hardened.zoo

        return getattr(hardened.zoo, name)
    raise AttributeError(f"module 'hardened' has no attribute {name!r}")
