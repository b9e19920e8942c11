"""The classifier head shared by every builder, and its defense spec.

A head is a stack of fully connected layers named ``fc1 .. fcK`` followed by
``logits``. The defense spec (a plain, JSON-friendly dict) says how it is
defended:

``hashed``: ``[cr_a, cr_b]`` — the last two FC layers (the last hidden layer
    and ``logits``) become `HashedDense` at these compression ratios
    (seed 000). ``hash_seed`` seeds their hashes.
``extra_fc``: width of an extra hidden FC before ``logits`` (seed 000 adds a
    hashed FC-512 to networks with a single FC layer).
``prune``: FC layers are `PrunableDense` (the builders also make the convs
    prunable).
``stochastic``: ``{"kind": "dropout"|"sap"|"noise", ...}`` inserted after
    ``fc1`` (between FC1 and FC2, as in seed 004): ``rate``, ``ratio`` or
    ``stddev``, and ``seed``.
"""

import keras

from hardened.layers import (
    DefensiveDropout,
    GaussianNoiseInjection,
    HashedDense,
    PrunableDense,
    StochasticActivationPruning,
)

HEAD_KEYS = {"hashed", "hash_seed", "extra_fc", "prune", "stochastic", "conv_noise"}
STOCHASTIC_KINDS = ("dropout", "sap", "noise")


def normalize_defense(defense):
    """Validate a defense spec and fill its defaults.

    Args:
        defense: ``None``, a dict, or a shorthand string ``"none"``/``"hashed"``/``"prune"``.

    Returns:
        A new dict with every key of `HEAD_KEYS` present.
    """
    if defense is None or defense == "none":
        defense = {}
    elif isinstance(defense, str):
        if defense == "prune":
            defense = {"prune": True}
        else:
            raise ValueError(f"Unknown defense shorthand {defense!r}; use None, 'none', 'prune' or a dict.")
    if not isinstance(defense, dict):
        raise TypeError(f"defense must be None, a string or a dict, got {type(defense).__name__}.")
    unknown = set(defense) - HEAD_KEYS
    if unknown:
        raise ValueError(f"Unknown defense keys {sorted(unknown)}; known keys: {sorted(HEAD_KEYS)}.")
    spec = {"hashed": None, "hash_seed": 0, "extra_fc": None, "prune": False, "stochastic": None,
            "conv_noise": None}
    spec.update(defense)
    if spec["hashed"] is not None:
        crs = list(spec["hashed"])
        if len(crs) != 2 or not all(0 < float(c) <= 1 for c in crs):
            raise ValueError(f"defense['hashed'] must be two compression ratios in (0, 1], got {spec['hashed']!r}.")
        spec["hashed"] = [float(c) for c in crs]
        if spec["prune"]:
            raise ValueError("A head cannot be both hashed and pruned.")
    stoch = spec["stochastic"]
    if stoch is not None:
        if not isinstance(stoch, dict) or stoch.get("kind") not in STOCHASTIC_KINDS:
            raise ValueError(f"defense['stochastic'] must be a dict with kind in {STOCHASTIC_KINDS}, got {stoch!r}.")
    noise = spec["conv_noise"]
    if noise is not None:
        if not isinstance(noise, dict) or set(noise) - {"init", "inner", "seed"}:
            raise ValueError(
                f"defense['conv_noise'] must be a dict with keys init, inner (stddevs) and seed, got {noise!r}."
            )
        if any(float(noise.get(k, 0)) < 0 for k in ("init", "inner")):
            raise ValueError(f"defense['conv_noise'] stddevs must be >= 0, got {noise!r}.")
    return spec


def stochastic_layer(spec, name):
    """The stochastic layer a spec names (``None`` if none)."""
    if spec is None:
        return None
    kind, seed = spec["kind"], spec.get("seed")
    if kind == "dropout":
        return DefensiveDropout(spec.get("rate", 0.3), seed=seed, name=name)
    if kind == "sap":
        return StochasticActivationPruning(spec.get("ratio", 1.0), seed=seed, name=name)
    return GaussianNoiseInjection(spec.get("stddev", 0.1), seed=seed, name=name)


def dense_layer(units, spec, name, activation=None, hashed_cr=None, seed_offset=0):
    """One FC layer of a head: Dense, PrunableDense or HashedDense."""
    if hashed_cr is not None:
        return HashedDense(units, compression=hashed_cr, seed=spec["hash_seed"] + seed_offset,
                           activation=activation, name=name)
    cls = PrunableDense if spec["prune"] else keras.layers.Dense
    return cls(units, activation=activation, name=name)


def classifier_head(x, num_classes, hidden=(256, 256), defense=None, dropout=None):
    """Append a defended classifier head to a (flattened or pooled) feature tensor.

    Args:
        x: Symbolic 2-D feature tensor.
        num_classes: Number of output logits.
        hidden: Widths of the hidden FC layers (``fc1``, ``fc2``, ...).
        defense: Defense spec (see module docstring).
        dropout: Plain training-time dropout rate after hidden layers (the
            architecture's own regulariser, not a defense).

    Returns:
        Logits tensor (no softmax).
    """
    spec = normalize_defense(defense)
    widths = list(hidden) + ([spec["extra_fc"]] if spec["extra_fc"] else [])
    n_fc = len(widths) + 1
    # Which positions (0-based among all FC layers incl. logits) are hashed.
    hashed = {}
    if spec["hashed"]:
        if n_fc < 2:
            raise ValueError("A hashed head needs at least one hidden FC layer (set extra_fc).")
        hashed = {n_fc - 2: spec["hashed"][0], n_fc - 1: spec["hashed"][1]}
    if spec["stochastic"] is not None and not widths:
        raise ValueError("A stochastic defense sits after fc1, but this head has no hidden FC layer (set extra_fc).")
    for i, units in enumerate(widths):
        x = dense_layer(units, spec, f"fc{i + 1}", activation="relu", hashed_cr=hashed.get(i), seed_offset=i)(x)
        if i == 0 and spec["stochastic"] is not None:
            x = stochastic_layer(spec["stochastic"], "fc1_" + spec["stochastic"]["kind"])(x)
        if dropout:
            # Training-time regulariser only (Keras Dropout is off at inference).
            x = keras.layers.Dropout(dropout, name=f"fc{i + 1}_train_dropout")(x)
    return dense_layer(num_classes, spec, "logits", hashed_cr=hashed.get(n_fc - 1), seed_offset=n_fc - 1)(x)
