"""Datasets and defense kinds as the reports name them, and the paragraph a card prints for each defense."""

import re

#: Dataset key -> (display name, Hugging Face dataset id).
DATASETS = {
    "mnist": ("MNIST", "ylecun/mnist"),
    "fashion_mnist": ("Fashion-MNIST", "zalando-datasets/fashion_mnist"),
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
}
#: The standard linf budget per dataset family, the one cards headline (RobustBench / Madry et al.).
STANDARD_LINF = {"mnist": 0.3, "fashion_mnist": 0.3, "cifar10": 8 / 255}
_DATASET_ALIASES = {"fashion-mnist": "fashion_mnist", "cifar-10": "cifar10"}

JPEG_CAVEAT = ("Evaluated and trained on a JPEG re-encoding of CIFAR-10 (the lossless original was not "
               "available); accuracies are not directly comparable to the original test set.")

#: One paragraph per defense kind (the names used in registry ``defense`` fields and checkpoint names).
DEFENSE_TEXTS = {
    "base": ("**Undefended baseline.** The architecture trained normally, with no defense. It is the "
             "reference against which the defended models of the zoo are compared."),
    "hash": ("**Defensive hash classifier** (seed 000). The last two fully connected layers are HashedNets "
             "layers at extreme compression: each virtual weight is V[i, j] = w[h(i, j)]·ξ(i, j), with "
             "K = CR·n·m real weights shared through the hash h and signs ξ ∈ {±1}; the model is then "
             "retrained end to end. The paper argues that the compressed head moves the decision boundary "
             "away from the inputs (larger DeepFool distance) rather than hiding gradients."),
    "gi1": ("**Gradient inhibition GI1** (seed 000), applied at test time to the last three layers: "
            "w ← w + ε·sign(w). It enlarges every weight's magnitude, which scales the logits and saturates "
            "the softmax, so gradients of the cross-entropy vanish. No retraining; the weights are a view of "
            "the base checkpoint."),
    "gi2": ("**Gradient inhibition GI2** (seed 000), applied at test time to the last three layers: "
            "w ← (1 + ε)·w. A pure rescaling of the logits: the predicted class is unchanged while the softmax "
            "saturates, so cross-entropy gradients vanish in float32. No retraining; the weights are a view "
            "of the base checkpoint."),
    "gi3": ("**Gradient inhibition GI3** (seed 000), applied at test time to the last three layers: "
            "w ← w + ε·U(0, 1)·sign(w), with the uniform noise drawn from a recorded seed. Like GI1 it "
            "enlarges the weights (saturating the softmax) and adds a random distortion of the decision "
            "function. No retraining; the weights are a view of the base checkpoint."),
    "la": ("**Logits augmentation** (seed 002): w ← τ·w on the last layer, a rescaling of the logits "
           "(GI2 with ε = τ − 1 on one layer) that saturates the softmax."),
    "prune": ("**Iterative magnitude pruning** (seed 002): rounds of removing the smallest remaining weights "
              "(10 % of the FC weights, 5 % of the conv weights per round) with retraining; the masks are "
              "layer state saved with the checkpoint."),
    "hrs": ("**Hierarchical random switching** (seed 004): blocks of the network are replaced by N parallel "
            "channels trained bottom-up, and a switch activates one channel per block at run time, so the "
            "model is random at inference."),
    "defendpp": ("**Defend++ bottleneck reinforcement** (seed 003): the classifier's first blocks are shared "
                 "with an auto-encoder whose decoder reconstructs multi-scale DCT low-pass versions of the "
                 "image; the classifier is trained jointly with the reconstruction losses. The decoder is "
                 "training-time only (saved in `decoder/` for inspection). Deviation from the paper: each scale's "
                 "reconstruction passes through a BatchNormalization (gamma initialised to 0) that the paper's U/H "
                 "modules do not have; without it the decoder diverged to NaN under SGD here."),
    "sap": ("**Stochastic activation pruning** (Dhillon et al. 2018, baseline of seed 004): at inference each "
            "example's activations are sampled with replacement with probability proportional to their "
            "magnitude; those never drawn are set to zero and the survivors are scaled up by the inverse of their "
            "probability of being kept, so the model is random (and unbiased in expectation)."),
    "dropout": ("**Defensive dropout** (baseline of seed 004): dropout kept active at inference, so the model "
                "is random."),
    "noise": ("**Gaussian noise injection** (random self-ensemble, baseline of seed 004): Gaussian noise "
              "added inside the network at inference, so the model is random."),
    "at": ("**Adversarial training** (baseline of seeds 000, 003, 004): trained on adversarial examples "
           "crafted during training."),
}
#: Other spellings of the kinds above (tokens of names, registry ``defense`` fields, view transforms).
_DEFENSE_ALIASES = {
    "none": "base", "original": "base", "plain": "base", "hashed": "hash",
    "logits_augmentation": "la", "logits-augmentation": "la", "pruned": "prune", "pruning": "prune",
    "defend++": "defendpp", "defend": "defendpp", "pgd-at": "at", "pgdat": "at", "adv": "at",
}
#: The kinds that make the model random at inference.
_RANDOM_KINDS = ("hrs", "sap", "dropout", "noise")


def _dataset_key(name):
    if isinstance(name, dict):
        name = name.get("name")
    if not isinstance(name, str) or not name:
        return None
    key = name.strip().lower()
    return _DATASET_ALIASES.get(key, key)


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
