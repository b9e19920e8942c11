"""Robustness metrics, defined as in the seed papers.

Conventions (all rates are fractions in [0, 1], not percentages):

* **Untargeted attack success rate** (seed 000, papers.md): over the images the
  model classifies correctly *before* the attack, the share it misclassifies
  after the attack. Images that were wrong to begin with are not attacked.
* **Targeted attack success rate** (seed 000): the first ``N`` correctly
  classified images, each paired with every wrong class as the target
  (``N x (C - 1)`` pairs); the share of pairs classified as their target.
* **Distortion**: mean L0 / L2 / L∞ of ``x_adv - x`` over *successful*
  examples only (failed examples would drag the mean towards their cap).
* **DeepFool robustness ρ** (Moosavi-Dezfooli et al., used by seed 000 Table II):
  mean of ``||r||_2 / ||x||_2`` over the images DeepFool moved across the boundary.
* **Robustness estimator** (seed 000, eq. 3): ``R = α·g + (1 − α)·φ`` with
  ``g = mean |∂Z_j/∂x_i|`` over classes ``j`` and input dims ``i`` and
  ``φ = Var_j Z_j(x)``, each averaged over the images; Algorithm 1 normalises
  g and φ to [0, 1] *across candidate models* before combining them.
* **DES** (seed 004): ``Δ defense rate / (Δ test-accuracy drop + η)``, η = 0.002.
"""

import math

import numpy as np

from hardened.attacks._grad import loss_and_input_grad

#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson_interval(k, n, z=Z95):
    """Wilson score interval of a binomial proportion.

    Args:
        k: Successes.
        n: Trials.
        z: Normal quantile (default: 95 % two-sided).

    Returns:
        ``(low, high)`` in [0, 1], or ``(None, None)`` when ``n`` is 0.
    """
    if not n:
        return None, None
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)

#: Changes smaller than this (in [0, 1] pixel units, ~1/255000) are float
#: round-off from clipping, not perturbation; L0 ignores them.
L0_TOLERANCE = 1e-6

#: η of seed 004's DES, in the same units as the rates (fractions).
DES_ETA = 0.002


# ----------------------------------------------------------------- predictions
def predict_logits(model, x, batch_size=128):
    """Logits of ``model`` on ``x``, computed in batches, as float32 numpy.

    Uses a plain eager call per batch (not ``model.predict``) so randomized
    layers draw anew on every batch exactly as they do under attack.
    """
    from keras import ops

    x = np.asarray(x, dtype=np.float32)
    _check_batch_size(batch_size)
    if len(x) == 0:
        out = model.output_shape[-1] if hasattr(model, "output_shape") else 0
        return np.zeros((0, out), np.float32)
    chunks = [ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
              for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks).astype(np.float32, copy=False)


def predict_labels(model, x, batch_size=128):
    """Predicted classes (argmax of the logits), batched."""
    return np.argmax(predict_logits(model, x, batch_size), axis=-1)


def clean_accuracy(model, x, y, batch_size=128):
    """Share of ``x`` classified as ``y``.

    Args:
        model: Keras model returning logits.
        x: Images (N, H, W, C) in [0, 1].
        y: Integer labels (N,).
        batch_size: Images per forward pass.

    Returns:
        Accuracy as a float in [0, 1] (``nan`` for an empty set).
    """
    y = np.asarray(y).reshape(-1)
    if len(y) == 0:
        return float("nan")
    return float(np.mean(predict_labels(model, x, batch_size) == y))


# ----------------------------------------------------------------- success rates
def untargeted_success(y_true, pred_clean, pred_adv):
    """Untargeted success rate over the originally correct images.

    Args:
        y_true: True labels (N,).
        pred_clean: Predictions on the clean images (N,).
        pred_adv: Predictions on the adversarial images (N,).

    Returns:
        ``(rate, n_attacked, n_success)``: ``n_attacked`` is the number of
        originally correct images; ``rate`` is ``nan`` when it is 0.
    """
    y_true, pred_clean, pred_adv = (np.asarray(a).reshape(-1) for a in (y_true, pred_clean, pred_adv))
    _same_length(y_true=y_true, pred_clean=pred_clean, pred_adv=pred_adv)
    correct = pred_clean == y_true
    n_attacked = int(correct.sum())
    n_success = int(np.sum(correct & (pred_adv != y_true)))
    rate = n_success / n_attacked if n_attacked else float("nan")
    return rate, n_attacked, n_success


def targeted_success(pred_adv, targets):
    """Targeted success rate: the share of examples classified as their target.

    Args:
        pred_adv: Predictions on the adversarial images (M,).
        targets: Target classes (M,), one per (image, target) pair.

    Returns:
        ``(rate, n_attacked, n_success)``; ``rate`` is ``nan`` for M = 0.
    """
    pred_adv, targets = np.asarray(pred_adv).reshape(-1), np.asarray(targets).reshape(-1)
    _same_length(pred_adv=pred_adv, targets=targets)
    n = len(targets)
    hits = int(np.sum(pred_adv == targets))
    return (hits / n if n else float("nan")), n, hits


def targeted_pairs(y_true, pred_clean, n_images, num_classes):
    """Seed 000's targeted protocol: first ``n_images`` correct images x all wrong targets.

    Args:
        y_true: True labels (N,).
        pred_clean: Clean predictions (N,).
        n_images: How many correctly classified images to take (in order).
        num_classes: Number of classes C; each image gets the C − 1 other classes.

    Returns:
        ``(index, labels, targets)``: index into the original arrays of each
        pair (length ``k·(C−1)``, ``k <= n_images``), its true label and target.
    """
    y_true, pred_clean = np.asarray(y_true).reshape(-1), np.asarray(pred_clean).reshape(-1)
    correct = np.flatnonzero(pred_clean == y_true)[: max(int(n_images), 0)]
    index, targets = [], []
    for i in correct:
        for t in range(int(num_classes)):
            if t != y_true[i]:
                index.append(i)
                targets.append(t)
    index = np.asarray(index, dtype=np.int64)
    return index, y_true[index], np.asarray(targets, dtype=np.int64)


# ----------------------------------------------------------------- distortion
def perturbation_norms(x, x_adv, l0_tolerance=L0_TOLERANCE):
    """Per-example L0, L2 and L∞ of ``x_adv − x``.

    L0 counts *pixels* (spatial positions) with any channel changed by more
    than ``l0_tolerance``, the convention of JSMA and C&W for colour images.
    L2 and L∞ are over all input elements.

    Returns:
        Dict of ``(N,)`` arrays ``l0``, ``l2``, ``linf``.
    """
    x = np.asarray(x, np.float64)
    x_adv = np.asarray(x_adv, np.float64)
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {x.shape} and {x_adv.shape}.")
    d = (x_adv - x).reshape(len(x), -1)
    if x.ndim == 4:  # (N, H, W, C): a pixel counts once whatever its channels
        changed = np.any(np.abs(x_adv - x) > l0_tolerance, axis=-1).reshape(len(x), -1)
    else:
        changed = np.abs(d) > l0_tolerance
    return {
        "l0": changed.sum(axis=1).astype(np.float64),
        "l2": np.sqrt(np.sum(d * d, axis=1)),
        "linf": np.max(np.abs(d), axis=1) if d.shape[1] else np.zeros(len(x)),
    }


def mean_distortion(x, x_adv, success=None, l0_tolerance=L0_TOLERANCE):
    """Mean L0 / L2 / L∞ over the successful examples.

    Args:
        x: Clean images.
        x_adv: Adversarial images (same shape).
        success: Boolean mask of successful examples (all if ``None``).
        l0_tolerance: See `perturbation_norms`.

    Returns:
        ``{"mean_l0", "mean_l2", "mean_linf"}``; values are ``None`` when no
        example succeeded (so JSON shows "no data" rather than a fake 0).
    """
    norms = perturbation_norms(x, x_adv, l0_tolerance)
    mask = np.ones(len(norms["l2"]), bool) if success is None else np.asarray(success, bool).reshape(-1)
    if len(mask) != len(norms["l2"]):
        raise ValueError(f"success mask has {len(mask)} entries for {len(norms['l2'])} examples.")
    if not mask.any():
        return {"mean_l0": None, "mean_l2": None, "mean_linf": None}
    return {f"mean_{k}": float(np.mean(v[mask])) for k, v in norms.items()}


def deepfool_robustness(x, x_adv, success=None):
    """DeepFool's ρ = mean ``||x_adv − x||_2 / ||x||_2`` over successful examples.

    Args:
        x: Clean images that DeepFool attacked.
        x_adv: DeepFool's outputs.
        success: Mask of the examples DeepFool moved across the boundary
            (a failed run gives no boundary distance); all if ``None``.

    Returns:
        ρ as a float, ``nan`` when no example succeeded.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    d = np.asarray(x_adv, np.float64).reshape(len(x), -1) - x
    mask = np.ones(len(x), bool) if success is None else np.asarray(success, bool).reshape(-1)
    if not mask.any():
        return float("nan")
    num = np.linalg.norm(d[mask], axis=1)
    den = np.maximum(np.linalg.norm(x[mask], axis=1), 1e-12)  # an all-black image has no scale
    return float(np.mean(num / den))


# ----------------------------------------------------------------- robustness estimator (seed 000)
def logit_gradient_magnitude(model, x, batch_size=128, per_example=False):
    """g(x) of seed 000: mean ``|∂Z_j/∂x_i|`` over classes j and input dims i.

    One backward pass per class (loss = logit of class k), via the project's
    backend-specific `hardened.attacks._grad.loss_and_input_grad`.

    Args:
        model: Keras model returning logits Z.
        x: Images.
        batch_size: Images per pass.
        per_example: Return the (N,) values instead of their mean.

    Returns:
        The mean of g over the images (or the per-image values).
    """
    from keras import ops

    x = np.asarray(x, np.float32)
    _check_batch_size(batch_size)
    num_classes = int(model.output_shape[-1])
    totals = np.zeros(len(x), np.float64)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        for k in range(num_classes):
            _, grad, _ = loss_and_input_grad(model, xb, lambda logits, k=k: ops.take(logits, k, axis=-1))
            totals[start:start + len(xb)] += np.abs(grad.reshape(len(xb), -1)).mean(axis=1)
    values = totals / num_classes
    return values if per_example else float(values.mean())


def logit_variance(model, x, batch_size=128, per_example=False, logits=None):
    """φ(x) of seed 000: the (population) variance of the logits of each image.

    Args:
        model: Keras model returning logits (unused when ``logits`` is given).
        x: Images.
        batch_size: Images per pass.
        per_example: Return the (N,) values instead of their mean.
        logits: Precomputed logits (N, C), to skip the forward pass.

    Returns:
        The mean of φ over the images (or the per-image values).
    """
    z = predict_logits(model, x, batch_size) if logits is None else np.asarray(logits, np.float64)
    values = np.var(np.asarray(z, np.float64), axis=-1)  # 1/m Σ (Z_j − mean Z)^2, as in the paper
    return values if per_example else float(values.mean())


def robustness_terms(model, x, batch_size=128):
    """Both raw terms of the robustness estimator on ``x``: ``{"g": ..., "phi": ...}``."""
    return {"g": logit_gradient_magnitude(model, x, batch_size), "phi": logit_variance(model, x, batch_size)}


def normalize_unit(values):
    """Min-max normalise a list of candidate values to [0, 1] (Algorithm 1's ``normalize``).

    All-equal values map to 0 (no candidate is worse than another).
    """
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
        return v
    if not np.all(np.isfinite(v)):
        raise ValueError(f"Cannot normalise non-finite values {v.tolist()}.")
    span = v.max() - v.min()
    return np.zeros_like(v) if span == 0 else (v - v.min()) / span


def robustness_estimator(g, phi, alpha=0.5):
    """Seed 000's ``R = α·g + (1 − α)·φ`` (smaller means more robust).

    Pass g and φ already normalised across candidates (`normalize_unit`);
    raw values have incomparable scales.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    return alpha * np.asarray(g, np.float64) + (1.0 - alpha) * np.asarray(phi, np.float64)


def estimator_table(g_values, phi_values, accuracies, base_accuracy, alpha=0.5, threshold=0.01):
    """Algorithm 1 of seed 000 after the candidates are trained: R for each candidate.

    g and φ are normalised to [0, 1] across the candidates; a candidate whose
    accuracy drop ``base_accuracy − accuracy`` is not below ``threshold``
    (T = 1 % in the paper) gets R = 1 (rejected).

    Args:
        g_values: Raw g of each candidate.
        phi_values: Raw φ of each candidate.
        accuracies: Clean accuracy of each candidate (fractions).
        base_accuracy: Accuracy of the undefended model (fraction).
        alpha: Weight of the gradient term.
        threshold: Largest tolerated accuracy drop T (fraction).

    Returns:
        Array of R values, one per candidate; the best candidate has the smallest R.
    """
    g_values, phi_values, accuracies = (np.asarray(a, np.float64).reshape(-1)
                                        for a in (g_values, phi_values, accuracies))
    if not len(g_values) == len(phi_values) == len(accuracies):
        raise ValueError("g_values, phi_values and accuracies need one entry per candidate "
                         f"(got {len(g_values)}, {len(phi_values)}, {len(accuracies)}).")
    r = robustness_estimator(normalize_unit(g_values), normalize_unit(phi_values), alpha)
    drop = float(base_accuracy) - accuracies
    return np.where(drop < float(threshold), r, 1.0)


# ----------------------------------------------------------------- DES (seed 004)
def defense_efficiency_score(base_accuracy, defended_accuracy, base_success_rate, defended_success_rate,
                             eta=DES_ETA):
    """Seed 004's Defense Efficiency Score ``Δd / (Δt + η)``.

    Δd is the gain in defense rate (defense rate = 1 − attack success rate)
    and Δt the drop in clean test accuracy, both relative to the unprotected
    base model and both as fractions; η = 0.002 offsets noise when Δt ≈ 0
    (footnote 2 of the paper).

    Args:
        base_accuracy: Clean accuracy of the unprotected model.
        defended_accuracy: Clean accuracy of the defended model.
        base_success_rate: Attack success rate on the unprotected model.
        defended_success_rate: Same attack's success rate on the defended model.
        eta: η.

    Returns:
        DES as a float (``inf``/``-inf`` if ``Δt + η`` is exactly 0).
    """
    for name, v in (("base_accuracy", base_accuracy), ("defended_accuracy", defended_accuracy),
                    ("base_success_rate", base_success_rate), ("defended_success_rate", defended_success_rate)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1] (not a percentage), got {v!r}.")
    gain = (1.0 - float(defended_success_rate)) - (1.0 - float(base_success_rate))
    drop = float(base_accuracy) - float(defended_accuracy)
    denom = drop + float(eta)
    if denom == 0:
        return math.copysign(math.inf, gain) if gain else float("nan")
    return gain / denom


# ----------------------------------------------------------------- helpers
def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


def _same_length(**arrays):
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Arrays must have the same length, got {lengths}.")
