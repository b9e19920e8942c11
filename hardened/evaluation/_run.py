"""Running one attack on a model and scoring it (shared by `evaluate` and `masking`).

`hardened.attacks` is imported lazily, inside functions: it is the heaviest
dependency of the evaluation and importing `hardened.evaluation` must stay cheap.
"""

import numpy as np

import hardened.attacks as attacks
from hardened.evaluation import metrics


def attacks_module():
    """`hardened.attacks`, checked to provide ``get_attack``."""
    if not hasattr(attacks, "get_attack"):
        raise ImportError(
            "hardened.attacks has no get_attack(): the attacks package is missing or incomplete "
            "in this install, so no attack can run."
        )
    return attacks


def make_attack(spec, seed=None):
    """Build the (possibly wrapped) attack object of an `AttackSpec`.

    ``seed`` is passed to attacks that take one (random starts, random search)
    unless the spec fixes it.
    """
    attacks = attacks_module()
    params = dict(spec.params)
    if spec.targeted:
        params["targeted"] = True
    if seed is not None and "seed" not in params and _takes(attacks, spec.attack, "seed"):
        params["seed"] = int(seed)
    attack = attacks.get_attack(spec.attack, **params)
    if spec.wrapper is None:
        return attack
    wrap = getattr(attacks, spec.wrapper, None)
    if wrap is None:
        raise ImportError(f"hardened.attacks has no {spec.wrapper}() wrapper, needed by {spec.name}.")
    return wrap(attack, **spec.wrapper_params)


def _takes(attacks, name, param):
    """Whether the registered attack ``name`` declares ``param`` (its ``defaults``)."""
    registry = getattr(attacks, "ATTACKS", None)
    if registry is None:
        base = getattr(attacks, "base", None)
        registry = getattr(base, "ATTACKS", {}) if base is not None else {}
    cls = registry.get(str(name).lower()) if isinstance(registry, dict) else None
    return param in getattr(cls, "defaults", {})


def attack_params(attack, fallback):
    """The parameters an attack object reports (resolved defaults included), JSON-safe."""
    params = getattr(attack, "params", None)
    params = dict(params) if isinstance(params, dict) else dict(fallback)
    return _jsonable(params)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    name = getattr(obj, "name", None)
    return str(name) if isinstance(name, str) else repr(obj)


def generate(attack, model, x, y, target=None, batch_size=128, progress=False):
    """``attack.generate`` with its output checked: same shape, finite, in [0, 1]."""
    x_adv = attack.generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
    x_adv = np.asarray(x_adv, dtype=np.float32)
    if x_adv.shape != np.shape(x):
        raise RuntimeError(f"{getattr(attack, 'name', attack)} returned shape {x_adv.shape} for inputs "
                           f"of shape {np.shape(x)}.")
    if not np.all(np.isfinite(x_adv)):
        raise RuntimeError(f"{getattr(attack, 'name', attack)} returned NaN or infinite pixels.")
    # Out-of-range pixels would be an invalid (unfair) adversarial example:
    # tolerate float round-off only.
    if x_adv.size and (x_adv.min() < -1e-5 or x_adv.max() > 1 + 1e-5):
        raise RuntimeError(f"{getattr(attack, 'name', attack)} returned pixels outside [0, 1] "
                           f"([{x_adv.min():.4g}, {x_adv.max():.4g}]).")
    return np.clip(x_adv, 0.0, 1.0)


def untargeted(attack, model, x, y, pred_clean, batch_size=128, progress=False):
    """Attack the originally correct images of ``x`` and score them.

    Returns:
        Dict with ``success_rate``, ``n_attacked``, ``n_success``, the
        distortion means, and (private, not for JSON) ``_index`` (indices into
        ``x`` of the attacked images), ``_success`` (per attacked image),
        ``_x`` and ``_x_adv``.
    """
    y = np.asarray(y).reshape(-1)
    index = np.flatnonzero(np.asarray(pred_clean).reshape(-1) == y)
    out = {"n_attacked": int(len(index)), "n_success": 0, "success_rate": float("nan"),
           "mean_l0": None, "mean_l2": None, "mean_linf": None,
           "_index": index, "_success": np.zeros(0, bool), "_x": x[index], "_x_adv": x[index]}
    if len(index) == 0:
        return out
    xs, ys = x[index], y[index]
    x_adv = generate(attack, model, xs, ys, batch_size=batch_size, progress=progress)
    pred_adv = metrics.predict_labels(model, x_adv, batch_size)
    rate, n_att, n_succ = metrics.untargeted_success(ys, ys, pred_adv)  # all attacked images were correct
    success = pred_adv != ys
    out.update({"success_rate": rate, "n_attacked": n_att, "n_success": n_succ,
                "_success": success, "_x_adv": x_adv, "_x": xs})
    out.update(metrics.mean_distortion(xs, x_adv, success))
    return out


def targeted(attack, model, x, y, pred_clean, n_images, num_classes, batch_size=128, progress=False):
    """Seed 000's targeted protocol: first ``n_images`` correct images x every wrong class."""
    index, labels, targets = metrics.targeted_pairs(y, pred_clean, n_images, num_classes)
    out = {"n_attacked": int(len(index)), "n_success": 0, "success_rate": float("nan"),
           "n_source_images": int(len(np.unique(index))),
           "mean_l0": None, "mean_l2": None, "mean_linf": None}
    if len(index) == 0:
        return out
    xs = x[index]
    x_adv = generate(attack, model, xs, labels, target=targets, batch_size=batch_size, progress=progress)
    pred_adv = metrics.predict_labels(model, x_adv, batch_size)
    rate, n_att, hits = metrics.targeted_success(pred_adv, targets)
    out.update({"success_rate": rate, "n_attacked": n_att, "n_success": hits})
    out.update(metrics.mean_distortion(xs, x_adv, pred_adv == targets))
    return out
