"""Datasets and defense kinds as the reports name them, and the paragraph a card prints for each defense."""

import json
import re
from pathlib import Path

from hardened.data import canonical_dataset

#: Dataset key -> (display name, Hugging Face dataset id).
DATASETS = {
    "mnist": ("MNIST", "ylecun/mnist"),
    "fashion_mnist": ("Fashion-MNIST", "zalando-datasets/fashion_mnist"),
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
}
#: The standard linf budget per dataset family, the one cards headline (RobustBench / Madry et al.).
STANDARD_LINF = {"mnist": 0.3, "fashion_mnist": 0.3, "cifar10": 8 / 255}

JPEG_CAVEAT = ("Evaluated and trained on a JPEG re-encoding of CIFAR-10 (the lossless original was not "
               "available); accuracies are not directly comparable to the original test set.")

#: One paragraph per defense kind (the names used in registry ``defense`` fields and checkpoint names), in
#: display order; the texts live in ``data/defenses.json``.
DEFENSE_TEXTS = json.loads((Path(__file__).resolve().parent / "data" / "defenses.json").read_text(
    encoding="utf-8"))["texts"]
#: Other spellings of the kinds above (tokens of names, registry ``defense`` fields, view transforms).
_DEFENSE_ALIASES = {
    "none": "base", "original": "base", "plain": "base", "hashed": "hash",
    "logits_augmentation": "la", "logits-augmentation": "la", "pruned": "prune", "pruning": "prune",
    "defend++": "defendpp", "defend": "defendpp", "pgd-at": "at", "pgdat": "at", "adv": "at",
    "bit_depth": "bitdepth", "bit-depth": "bitdepth", "median_smoothing": "median", "weight_quant": "quant",
    "quantization": "quant", "quantized": "quant", "quant8": "quant", "quant3": "quant",
}
#: The kinds that make the model random at inference.
_RANDOM_KINDS = ("hrs", "sap", "dropout", "noise")


def _dataset_key(name):
    if isinstance(name, dict):
        name = name.get("name")
    if not isinstance(name, str) or not name:
        return None
    key = name.strip().lower()
    return canonical_dataset(key, strict=False)


def _kind(token):
    token = str(token).strip().lower()
    token = _DEFENSE_ALIASES.get(token, token)
    return token if token in DEFENSE_TEXTS else None


def _kinds_from(value):
    """Defense kinds from a string (``"hash-gi3"``), a list, or a builder ``defense`` dict."""
    if value is None:
        return []
    if isinstance(value, dict):
        kinds = []
        if value.get("hashed"):
            kinds.append("hash")
        if value.get("prune"):
            kinds.append("prune")
        stochastic = value.get("stochastic")
        if isinstance(stochastic, dict) and _kind(stochastic.get("kind", "")):
            kinds.append(_kind(stochastic["kind"]))
        if value.get("conv_noise"):
            kinds.append("noise")
        return kinds
    if isinstance(value, (list, tuple)):
        return [k for v in value for k in _kinds_from(v)]
    text = str(value).strip().lower()
    if _kind(text):
        return [_kind(text)]
    return [k for k in (_kind(t) for t in re.split(r"[-+ ,/]", text)) if k]


def defense_kinds(name, registry_entry=None, metadata=None, view=None):
    """The defense kinds of a model, in a stable order (``["hash", "gi3"]``; ``["base"]`` if none).

    The registry entry's ``defense`` is authoritative when present. Otherwise
    the union of the metadata's ``defense`` (a string or a builder ``defense``
    dict), the view's transform and the tokens of the canonical name
    (``arch-defense-dataset``: ``"vgg19-hash-gi3-cifar10"`` -> hash, gi3).
    """
    kinds = _kinds_from((registry_entry or {}).get("defense"))
    if not kinds:
        kinds = _kinds_from((metadata or {}).get("defense")) + _kinds_from(name)
        if view and view.get("transform"):
            kinds += _kinds_from(view["transform"])
    order = list(DEFENSE_TEXTS)
    kinds = sorted(set(kinds), key=order.index)
    if len(kinds) > 1 and "base" in kinds:
        kinds.remove("base")
    return kinds or ["base"]


def defense_key(kinds):
    """``["hash", "gi3"]`` -> ``"hash-gi3"`` (the key of `PAPER_RESULTS` and of registry ``defense`` fields)."""
    return "-".join(kinds) if kinds else "base"
