"""Gradient-masking checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness").

Each check returns a named flag::

    {"name": ..., "triggered": bool, "kind": "masking" | "randomness",
     "evaluated": bool, "detail": "...", "value": ..., "threshold": ...}

``gradient_masking`` is true when any flag of kind ``"masking"`` triggered.
Every flag is declared once, in `FLAGS` (name, kind, threshold, the check
that computes it from a run, and the sentence a card prints when it
triggers); `THRESHOLDS`, `FLAG_NAMES` and `ROW_FLAGS` are read off it.
The ``randomized`` flag is of kind ``"randomness"``: randomness by itself is not
evidence of masked gradients, but it makes single-sample white-box numbers
unreliable, so the adaptive suite then adds EOT and fixed-randomness attacks and
``eot_stronger_than_plain`` (a masking flag) compares them with plain PGD.

The cheap checks (`run_masking_checks`) run on every evaluation: an ε-sweep of
FGSM, PGD-CE and PGD-margin on a subset, the share of exactly-zero CE input
gradients, two forward passes for randomness, and a short Square run as the
black-box reference. `finalize_flags` adds the comparisons that the
suite's own results allow.
"""

import dataclasses
import math

import numpy as np

from hardened.attacks._grad import loss_and_input_grad
from hardened.evaluation import _run, metrics
from hardened.layers import randomized_layers

#: Thresholds of the flags (fractions). Chosen well above the sampling noise
#: of a ~100-image subset (binomial std <= 5 points).
ZERO_GRADIENT_SHARE = 0.5
CE_MARGIN_GAP = 0.20
SINGLE_STEP_LEAD = 0.10
EPS_DROP = 0.10
EPS_MIN_RISE = 0.05
UNBOUNDED_SUCCESS = 0.99
BLACK_BOX_LEAD = 0.10
TRANSFER_LEAD = 0.10
EOT_LEAD = 0.10
#: AutoAttack's own check (``check_square_sr`` of the reference code): Square, run after the gradient attacks,
#: must not lower the robust accuracy by more than 0.2 points.
AUTOATTACK_SQUARE_GAIN = 0.002

#: Sweep settings: a diagnostic, not a reported robustness number.
SWEEP_STEPS = 20
SWEEP_SUBSET = 100
SQUARE_QUERIES = 1000
SQUARE_SUBSET = 50


def make_flag(name, triggered, detail, value=None, kind=None, evaluated=True, threshold=None):
    """A flag dict (see the module docstring); kind and threshold default to the flag's `FLAGS` entry."""
    spec = FLAGS.get(name)
    return {"name": name, "triggered": bool(triggered) if evaluated else False,
            "kind": kind or (spec.kind if spec else "masking"), "evaluated": bool(evaluated), "detail": detail,
            "value": value, "threshold": (spec.threshold if spec else None) if threshold is None else threshold}


def gradient_masking(flags):
    """True if any evaluated flag of kind "masking" triggered."""
    return any(f["triggered"] and f["kind"] == "masking" for f in flags)


# ----------------------------------------------------------------- randomness
def forward_randomness(model, x):
    """Run ``x`` through ``model`` twice; report whether the logits differ.

    Returns:
        ``{"differs": bool, "max_abs_diff": float, "randomized_layers": [names]}``.
    """
    from keras import ops

    a = ops.convert_to_numpy(model(x, training=False))
    b = ops.convert_to_numpy(model(x, training=False))
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    layers = [layer.name for layer in randomized_layers(model) if getattr(layer, "randomness", True)]
    return {"differs": diff > 0.0, "max_abs_diff": diff, "randomized_layers": layers}


def check_randomized(info):
    """The ``randomized`` flag from `forward_randomness` output."""
    if info["differs"]:
        detail = (f"two forward passes of the same input differ (max |Δlogit| = {info['max_abs_diff']:.3g}); "
                  "white-box numbers need EOT and fixed-randomness attacks")
    elif info["randomized_layers"]:
        detail = (f"layers {info['randomized_layers']} are marked random but two passes agreed on this input")
    else:
        detail = "two forward passes agree; no randomized layers"
    return make_flag("randomized", info["differs"], detail, value=info["max_abs_diff"], kind="randomness",
                     threshold=0.0)


# ----------------------------------------------------------------- zero gradients
def _ce(logits, labels):
    from keras import ops

    return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def zero_gradient_share(model, x, y, batch_size=128):
    """How much of the CE-loss input gradient is exactly zero.

    Returns:
        ``(share_of_entries, share_of_images_all_zero)``. The flag uses the
        second: per-entry zeros are common on plain models with sparse images
        (MNIST's black background under dead ReLUs), whereas an image whose
        whole gradient is exactly 0 is what a saturated softmax (GI,
        logits augmentation, distillation) or a non-differentiable layer
        produces: sign-based attacks then have no direction at all.
    """
    zeros, total, dead = 0, 0, 0
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float32)
        yb = np.asarray(y[start:start + batch_size]).astype("int32")
        _, grad, _ = loss_and_input_grad(model, xb, _ce, yb)
        flat = grad.reshape(len(xb), -1)
        is_zero = flat == 0
        zeros += int(is_zero.sum())
        total += is_zero.size
        dead += int(np.all(is_zero, axis=1).sum())
    if total == 0:
        return float("nan"), float("nan")
    return zeros / total, dead / len(x)


def check_zero_gradients(share_entries, share_images):
    """``zero_gradients``: most images have an exactly-zero CE input gradient (saturated softmax, GI, LA)."""
    evaluated = not math.isnan(share_images)
    return make_flag(
        "zero_gradients", evaluated and share_images > ZERO_GRADIENT_SHARE,
        f"{share_images:.1%} of the images have an exactly-zero CE-loss input gradient "
        f"(threshold {ZERO_GRADIENT_SHARE:.0%}); {share_entries:.1%} of all gradient entries are 0"
        if evaluated else "no images to measure",
        value={"share_images": share_images, "share_entries": share_entries}, evaluated=evaluated)


# ----------------------------------------------------------------- ε-sweep
def sweep_attacks(eps, steps=SWEEP_STEPS, seed=0):
    """(name, get_attack name, params) of the sweep attacks at one ε."""
    pgd = {"norm": "linf", "eps": eps, "steps": steps, "step_size": 2.5 * eps / steps, "restarts": 1,
           "random_start": True, "seed": int(seed)}
    return [
        ("FGSM", "fgsm", {"eps": eps}),
        ("PGD-CE", "pgd", {**pgd, "loss": "ce"}),
        ("PGD-margin", "pgd", {**pgd, "loss": "margin"}),
    ]


def eps_sweep(model, x, y, pred_clean, eps_values, steps=SWEEP_STEPS, batch_size=128, progress=False, seed=0):
    """Success rate of FGSM, PGD-CE and PGD-margin at each ε, on the correct images of ``x``.

    Returns:
        ``{"norm": "linf", "eps": [...], "steps": steps, "n_attacked": k,
        "curves": {name: [rate per ε]}, "errors": {...}}`` plus private
        ``_success`` (name -> list of per-image masks) for other checks.
    """
    attacks = _run.attacks_module()
    eps_values = sorted(float(e) for e in eps_values)
    curves, masks, errors = {}, {}, {}
    n_att = int(np.sum(np.asarray(pred_clean) == np.asarray(y)))
    bar = _bar(len(eps_values) * 3, "eps-sweep", progress)
    for eps in eps_values:
        for name, attack_name, params in sweep_attacks(eps, steps, seed):
            curves.setdefault(name, [])
            masks.setdefault(name, [])
            try:
                attack = attacks.get_attack(attack_name, **params)
                res = _run.untargeted(attack, model, x, y, pred_clean, batch_size=batch_size)
                curves[name].append(res["success_rate"])
                masks[name].append(res["_success"])
            except Exception as err:  # recorded, and the dependent flags become "not evaluated"
                errors[f"{name}@{eps:.4g}"] = f"{type(err).__name__}: {err}"
                curves[name].append(None)
                masks[name].append(None)
            bar.update(1)
    bar.close()
    return {"norm": "linf", "eps": eps_values, "steps": steps, "n_attacked": n_att, "curves": curves,
            "errors": errors, "_success": masks}


def _pairs(sweep, a, b, bounded_only=True):
    """(ε, rate_a, rate_b) where both attacks have a result."""
    out = []
    for i, eps in enumerate(sweep["eps"]):
        if bounded_only and eps >= 1.0:
            continue
        ra, rb = sweep["curves"].get(a, [None] * (i + 1))[i], sweep["curves"].get(b, [None] * (i + 1))[i]
        if ra is not None and rb is not None and not (math.isnan(ra) or math.isnan(rb)):
            out.append((eps, ra, rb))
    return out


def check_ce_margin_gap(sweep):
    """``ce_margin_gap``: PGD with the margin loss beats PGD-CE at some eps of the sweep by > `CE_MARGIN_GAP`."""
    pairs = _pairs(sweep, "PGD-margin", "PGD-CE")
    if not pairs:
        return make_flag("ce_margin_gap", False, "not evaluated: no PGD-CE/PGD-margin pair", evaluated=False)
    eps, margin, ce = max(pairs, key=lambda p: p[1] - p[2])
    gap = margin - ce
    return make_flag(
        "ce_margin_gap", gap > CE_MARGIN_GAP,
        f"largest gap at eps={eps:.4g}: PGD-margin {margin:.1%} vs PGD-CE {ce:.1%} ({gap * 100:+.1f} points; "
        f"threshold {CE_MARGIN_GAP * 100:.0f})",
        value={"eps": eps, "margin": margin, "ce": ce, "gap": gap})


def check_iterative_vs_single(sweep, attack_results=()):
    """``iterative_weaker_than_single_step``: FGSM beats an iterative CE attack of the same budget.

    Compares the sweep's FGSM with its PGD-CE, and the suite's FGSM rows with its BIM / MIM / PGD-CE rows
    of the same threat model; triggers on a lead above `SINGLE_STEP_LEAD`.
    """
    evidence = [("FGSM", "PGD-CE", eps, f, p) for eps, f, p in _pairs(sweep, "FGSM", "PGD-CE")]
    # The suite's own FGSM vs BIM/MIM/PGD-CE at the same threat model.
    by_threat = {}
    for r in attack_results:
        if r.get("status") == "ok" and r.get("wrapper") is None and not r.get("black_box"):
            by_threat.setdefault(r["threat"], []).append(r)
    for rows in by_threat.values():
        singles = [r for r in rows if r["attack"] == "fgsm"]
        iters = [r for r in rows if r["attack"] in ("bim", "mim", "pgd", "apgd")
                 and r.get("params", {}).get("loss", "ce") == "ce"]  # same loss as FGSM
        for s in singles:
            for it in iters:
                evidence.append((s["name"], it["name"], s.get("eps"), s["success_rate"], it["success_rate"]))
    evidence = [e for e in evidence if e[3] is not None and e[4] is not None
                and not (math.isnan(e[3]) or math.isnan(e[4]))]
    if not evidence:
        return make_flag("iterative_weaker_than_single_step", False, "not evaluated: no single-step/iterative pair",
                         evaluated=False)
    worst = max(evidence, key=lambda e: e[3] - e[4])
    lead = worst[3] - worst[4]
    return make_flag(
        "iterative_weaker_than_single_step", lead > SINGLE_STEP_LEAD,
        f"largest single-step lead: {worst[0]} {worst[3]:.1%} vs {worst[1]} {worst[4]:.1%} at eps={worst[2]:.4g} "
        f"({lead * 100:+.1f} points; threshold {SINGLE_STEP_LEAD * 100:.0f})",
        value=[{"single": e[0], "iterative": e[1], "eps": e[2], "single_rate": e[3], "iterative_rate": e[4]}
               for e in evidence])


def check_eps_monotone(sweep):
    """``no_increase_with_eps``: a sweep curve drops by > `EPS_DROP` or does not rise by `EPS_MIN_RISE`."""
    problems, values = [], {}
    for name in ("PGD-CE", "PGD-margin"):
        pts = [(e, r) for e, r in zip(sweep["eps"], sweep["curves"].get(name, [])) if r is not None
               and not math.isnan(r)]
        values[name] = pts
        if len(pts) < 2:
            continue
        for (e0, r0), (e1, r1) in zip(pts, pts[1:]):
            if r1 < r0 - EPS_DROP:
                problems.append(f"{name} drops from {r0:.1%} at eps={e0:.4g} to {r1:.1%} at eps={e1:.4g}")
        # The rise is judged on bounded eps only: at eps = 1 a random start alone can succeed.
        bounded = [p for p in pts if p[0] < 1.0] or pts
        (e_first, first), (e_last, last) = bounded[0], bounded[-1]
        if len(bounded) >= 2 and last - first < EPS_MIN_RISE and last < UNBOUNDED_SUCCESS:
            problems.append(f"{name} does not rise with eps ({first:.1%} at eps={e_first:.4g} -> "
                            f"{last:.1%} at eps={e_last:.4g})")
    if not any(len(v) >= 2 for v in values.values()):
        return make_flag("no_increase_with_eps", False, "not evaluated: fewer than two sweep points",
                         evaluated=False)
    detail = "; ".join(problems) if problems else "success rises with eps for PGD-CE and PGD-margin"
    return make_flag("no_increase_with_eps", bool(problems), detail,
                     value={k: [r for _, r in v] for k, v in values.items()})


def check_unbounded(sweep):
    """``unbounded_not_100``: at eps = 1 (every image reachable) PGD stays under `UNBOUNDED_SUCCESS`."""
    if not sweep["eps"] or sweep["eps"][-1] < 1.0:
        return make_flag("unbounded_not_100", False, "not evaluated: the sweep has no unbounded (eps = 1) point",
                         evaluated=False)
    rates = {name: sweep["curves"][name][-1] for name in ("PGD-CE", "PGD-margin")
             if name in sweep["curves"] and sweep["curves"][name][-1] is not None
             and not math.isnan(sweep["curves"][name][-1])}
    if not rates:
        return make_flag("unbounded_not_100", False, "not evaluated: no result at eps = 1", evaluated=False)
    low = {k: v for k, v in rates.items() if v < UNBOUNDED_SUCCESS}
    detail = ("at eps = 1 (any image reachable) " + ", ".join(f"{k} {v:.1%}" for k, v in rates.items())
              + (f"; below {UNBOUNDED_SUCCESS:.0%}: the attack, not the model, is failing" if low else ""))
    return make_flag("unbounded_not_100", bool(low), detail, value=rates)


# ----------------------------------------------------------------- black box vs white box
def cheap_square(model, x, y, pred_clean, eps, sweep, n_queries=SQUARE_QUERIES, subset=SQUARE_SUBSET,
                 batch_size=128, progress=False, seed=0):
    """A short Square run at ``eps`` on the first correct images.

    Returns its success rate with the sweep's white-box rates on the same
    images (the sweep attacked the same correct images, in the same order).
    """
    if eps not in sweep["eps"]:
        return None
    i = sweep["eps"].index(eps)
    correct = np.flatnonzero(np.asarray(pred_clean) == np.asarray(y))[:subset]
    if len(correct) == 0:
        return None
    attacks = _run.attacks_module()
    attack = attacks.get_attack("square", eps=eps, queries=n_queries, p_init=0.8, loss="margin", seed=int(seed))
    res = _run.untargeted(attack, model, x[correct], y[correct], pred_clean[correct], batch_size=batch_size,
                          progress=progress)
    white = {}
    for name in ("PGD-CE", "PGD-margin"):
        masks = sweep["_success"].get(name)
        if masks and masks[i] is not None:
            white[name] = float(np.mean(masks[i][: len(correct)]))
    return {"eps": eps, "n_queries": n_queries, "n_attacked": res["n_attacked"],
            "black_box": {"Square": res["success_rate"]}, "white_box": white}


def check_black_box(attack_results=(), square=None, square_error=None):
    """``black_box_stronger_than_white_box``: Square (the sweep's short run or a suite row) beats the best
    white-box attack of its threat model by more than `BLACK_BOX_LEAD`."""
    evidence = []
    if square is not None and square["white_box"]:
        best = max(square["white_box"].items(), key=lambda kv: kv[1])
        evidence.append((f"Square ({square['n_queries']} queries, sweep subset)", square["black_box"]["Square"],
                         f"{best[0]} (sweep)", best[1], square["eps"]))
    by_threat = {}
    for r in attack_results:
        if r.get("status") == "ok" and r.get("success_rate") is not None and not math.isnan(r["success_rate"]):
            by_threat.setdefault(r["threat"], []).append(r)
    for threat, rows in by_threat.items():
        black = [r for r in rows if r.get("black_box")]
        white = [r for r in rows if not r.get("black_box")]
        if black and white:
            wb = max(white, key=lambda r: r["success_rate"])
            for bb in black:
                evidence.append((bb["name"], bb["success_rate"], wb["name"], wb["success_rate"], threat))
    if not evidence:
        why = f" (Square failed: {square_error})" if square_error else ""
        return make_flag("black_box_stronger_than_white_box", False,
                         "not evaluated: no black-box attack with a white-box counterpart" + why, evaluated=False)
    worst = max(evidence, key=lambda e: e[1] - e[3])
    lead = worst[1] - worst[3]
    return make_flag(
        "black_box_stronger_than_white_box", lead > BLACK_BOX_LEAD,
        f"largest black-box lead: {worst[0]} {worst[1]:.1%} vs {worst[2]} {worst[3]:.1%} ({worst[4]}; "
        f"{lead * 100:+.1f} points; threshold {BLACK_BOX_LEAD * 100:.0f})",
        value=[{"black_box": e[0], "black_box_rate": e[1], "white_box": e[2], "white_box_rate": e[3],
                "threat": e[4]} for e in evidence])


def _same_attack(a, b):
    """Same attack, threat model and parameters (the seed aside): a transfer row and its white-box twin."""
    strip = lambda p: {k: v for k, v in (p or {}).items() if k != "seed"}  # noqa: E731
    return (a.get("attack") == b.get("attack") and a.get("threat") == b.get("threat")
            and strip(a.get("params")) == strip(b.get("params")))


def check_transfer(attack_results=()):
    """Transfer rows against the same attack run white-box on this model.

    Examples crafted on another model (``transfer_source``) must not fool this
    model more often than the same attack using this model's own gradients;
    when they do, its gradients are misleading (Carlini et al. 2019, Sec. 5:
    "transfer attacks should be weaker than white-box ones"). Unlike
    ``black_box_stronger_than_white_box``, which compares with the strongest
    white-box attack of the threat model, this pairs each transfer row with
    its own twin, so it shows which white-box rows overstate robustness even
    when a stronger iterative attack still succeeds.
    """
    ok = [r for r in attack_results if r.get("status") == "ok" and r.get("success_rate") is not None
          and not math.isnan(r["success_rate"])]
    evidence = []
    for t in (r for r in ok if r.get("transfer_source") is not None):
        for w in ok:
            if w.get("transfer_source") is None and not w.get("black_box") and _same_attack(t, w):
                evidence.append((t["name"], t["success_rate"], w["name"], w["success_rate"], t["threat"],
                                 t["transfer_source"]))
    if not evidence:
        return make_flag("transfer_stronger_than_white_box", False,
                         "not evaluated: no transfer attack with a white-box twin on this model", evaluated=False)
    worst = max(evidence, key=lambda e: e[1] - e[3])
    lead = worst[1] - worst[3]
    return make_flag(
        "transfer_stronger_than_white_box", lead > TRANSFER_LEAD,
        f"largest transfer lead: {worst[0]} {worst[1]:.1%} (crafted on {worst[5]}) vs {worst[2]} {worst[3]:.1%} "
        f"white-box ({worst[4]}; {lead * 100:+.1f} points; threshold {TRANSFER_LEAD * 100:.0f})",
        value=[{"transfer": e[0], "transfer_rate": e[1], "white_box": e[2], "white_box_rate": e[3],
                "threat": e[4], "transfer_source": e[5]} for e in evidence])


def check_autoattack_square(attack_results=()):
    """AutoAttack's own red flag: its gradient-free Square fools images that APGD and FAB could not.

    AutoAttack runs Square last, on the images the gradient attacks left
    robust. When it still lowers the robust accuracy by more than
    `AUTOATTACK_SQUARE_GAIN` (0.2 points, the reference code's
    ``check_square_sr``), the gradients misled the white-box components:
    the robustness evaluation is unreliable. Reads the per-component log
    (``components``) of every AutoAttack row.
    """
    evidence = []
    for r in attack_results:
        comps = r.get("components") or []
        if r.get("status") != "ok" or not comps or comps[-1].get("attack") != "Square":
            continue
        given = comps[0].get("n_attacked") or 0
        if given:
            evidence.append((r["name"], comps[-1].get("n_fooled", 0) / given, r.get("threat")))
    if not evidence:
        return make_flag("autoattack_square_gain", False,
                         "not evaluated: no AutoAttack (standard) row with a per-component log", evaluated=False)
    worst = max(evidence, key=lambda e: e[1])
    return make_flag(
        "autoattack_square_gain", worst[1] > AUTOATTACK_SQUARE_GAIN,
        f"Square, after APGD-CE, APGD-T and FAB-T, lowered {worst[0]}'s robust accuracy by "
        f"{worst[1] * 100:.1f} points ({worst[2]}; threshold {AUTOATTACK_SQUARE_GAIN * 100:.1f})",
        value=[{"row": e[0], "square_gain": e[1], "threat": e[2]} for e in evidence])


#: Plain white-box gradient attacks: what `check_convergence` expects to be the strongest at their budget.
GRADIENT_ATTACKS = ("fgsm", "bim", "mim", "pgd", "apgd")


def check_convergence(attack_results=()):
    """A plain white-box gradient attack that stops short of what another attack shows is possible.

    Per untargeted threat model (norm, eps), the strongest plain gradient
    attack (FGSM / BIM / MIM / PGD / APGD with no wrapper, the model's own
    gradients) must not be beaten by any other attack of the same budget
    (BPDA, a black-box or transfer attack, AutoAttack) beyond its 95 % Wilson
    upper bound. When it is, the plain rows understate what an attacker
    achieves (too few steps, a fixed step size that does not converge, or
    gradients that mislead): kind ``"convergence"``, so the card says to read
    the stronger rows, without calling it masking by itself. EOT and
    fixed-randomness rows are left out (on a randomized model they are
    expected to win; `check_eot` compares them).
    """
    ok = [r for r in attack_results if r.get("status") == "ok" and not r.get("targeted")
          and r.get("eps") is not None and r.get("success_rate") is not None
          and not math.isnan(r["success_rate"]) and r.get("n_attacked")]
    by_threat = {}
    for r in ok:
        by_threat.setdefault((r.get("norm"), float(r["eps"])), []).append(r)
    evidence = []
    for (norm, eps), rows in by_threat.items():
        plain = [r for r in rows if r.get("attack") in GRADIENT_ATTACKS and not r.get("wrapper")
                 and not r.get("black_box") and r.get("transfer_source") is None]
        others = [r for r in rows if r not in plain and r.get("wrapper") not in ("eot", "fixed_randomness")]
        if not plain or not others:
            continue
        best = max(plain, key=lambda r: (r["success_rate"], r["n_attacked"]))
        upper = metrics.wilson_interval(best.get("n_success", round(best["success_rate"] * best["n_attacked"])),
                                        best["n_attacked"])[1]
        top = max(others, key=lambda r: r["success_rate"])
        evidence.append((f"{norm}:{eps:g}", best["name"], best["success_rate"], upper, top["name"],
                         top["success_rate"]))
    if not evidence:
        return make_flag("white_box_not_converged", False, "not evaluated: no budget with both a plain gradient "
                         "attack and another attack", evaluated=False, kind="convergence")
    worst = max(evidence, key=lambda e: e[5] - e[3])
    return make_flag(
        "white_box_not_converged", worst[5] > worst[3] + 1e-9,  # Wilson's bound at k = n carries round-off
        f"{worst[4]} {worst[5]:.1%} vs the best plain gradient attack {worst[1]} {worst[2]:.1%} "
        f"(95 % upper bound {worst[3]:.1%}; {worst[0]})", kind="convergence",
        value=[{"threat": e[0], "gradient": e[1], "gradient_rate": e[2], "gradient_upper": e[3], "other": e[4],
                "other_rate": e[5]} for e in evidence])


def check_eot(attack_results=()):
    """``eot_stronger_than_plain``: an EOT or fixed-randomness row beats its plain twin by > `EOT_LEAD`."""
    ok = {r["name"]: r for r in attack_results if r.get("status") == "ok"}
    evidence = []
    for name, r in ok.items():
        for prefix in ("EOT-", "FixedRand-"):
            if name.startswith(prefix) and name[len(prefix):] in ok:
                plain = ok[name[len(prefix):]]
                evidence.append((name, r["success_rate"], plain["name"], plain["success_rate"]))
    evidence = [e for e in evidence if not (math.isnan(e[1]) or math.isnan(e[3]))]
    if not evidence:
        return make_flag("eot_stronger_than_plain", False,
                         "not evaluated: no EOT/fixed-randomness attack ran (deterministic model or seed suite)",
                         evaluated=False)
    worst = max(evidence, key=lambda e: e[1] - e[3])
    lead = worst[1] - worst[3]
    return make_flag(
        "eot_stronger_than_plain", lead > EOT_LEAD,
        f"largest lead: {worst[0]} {worst[1]:.1%} vs {worst[2]} {worst[3]:.1%} ({lead * 100:+.1f} points; "
        f"threshold {EOT_LEAD * 100:.0f})",
        value=[{"adaptive": e[0], "adaptive_rate": e[1], "plain": e[2], "plain_rate": e[3]} for e in evidence])


# ----------------------------------------------------------------- all together
def run_masking_checks(model, x, y, eps_values, black_box_eps=None, pred_clean=None, subset=SWEEP_SUBSET,
                       steps=SWEEP_STEPS, batch_size=128, cheap_black_box=True, progress=False, seed=0):
    """The cheap checks that run on every evaluation.

    Args:
        model: Keras model returning logits.
        x: Images in [0, 1].
        y: Integer labels.
        eps_values: l_inf ε values of the sweep (include 1.0 for the unbounded check).
        black_box_eps: ε of the short Square run (must be one of ``eps_values``);
            ``None`` skips it.
        pred_clean: Clean predictions of ``x`` (computed if ``None``).
        subset: Use the first ``subset`` images.
        steps: PGD iterations in the sweep.
        batch_size: Images per forward pass.
        cheap_black_box: Run the short Square attack.
        progress: Show tqdm bars.
        seed: Seed of PGD's random starts and Square's random search.

    Returns:
        ``{"flags": [...], "eps_sweep": {...}, "randomness": {...}, "square": {...} | None,
        "errors": {...}}``. ``flags`` lacks ``eot_stronger_than_plain``; use
        `finalize_flags` to add the suite-level comparisons.
    """
    x = np.asarray(x, np.float32)[:subset]
    y = np.asarray(y).reshape(-1)[:subset]
    pred_clean = (metrics.predict_labels(model, x, batch_size) if pred_clean is None
                  else np.asarray(pred_clean).reshape(-1)[:subset])
    errors = {}
    randomness = forward_randomness(model, x[: min(len(x), 16)])
    try:
        share, dead = zero_gradient_share(model, x, y, batch_size)
    except Exception as err:
        errors["zero_gradients"] = f"{type(err).__name__}: {err}"
        share, dead = float("nan"), float("nan")
    sweep = eps_sweep(model, x, y, pred_clean, eps_values, steps=steps, batch_size=batch_size, progress=progress,
                      seed=seed)
    errors.update(sweep["errors"])
    square, square_error = None, None
    if cheap_black_box and black_box_eps is not None:
        try:
            square = cheap_square(model, x, y, pred_clean, float(black_box_eps), sweep, batch_size=batch_size,
                                  progress=progress, seed=seed)
        except Exception as err:
            square_error = f"{type(err).__name__}: {err}"
            errors["square"] = square_error
    flags = [
        check_zero_gradients(share, dead),
        check_ce_margin_gap(sweep),
        check_iterative_vs_single(sweep),
        check_eps_monotone(sweep),
        check_unbounded(sweep),
        check_black_box((), square, square_error),
        check_randomized(randomness),
    ]
    return {"flags": flags, "eps_sweep": sweep, "randomness": randomness, "square": square,
            "square_error": square_error, "errors": errors}


def finalize_flags(cheap, attack_results=()):
    """All flags, in `FLAGS` order: the cheap checks merged with the comparisons the suite's results allow."""
    by_name = {f["name"]: f for f in cheap["flags"]}
    results = list(attack_results)
    for spec in FLAGS.values():
        if spec.suite_check is not None:
            by_name[spec.name] = spec.suite_check(cheap, results)
    return [by_name[name] for name in FLAGS if name in by_name]


def refresh_flags(results):
    """A results dict with the row-only flags (`ROW_FLAGS`) it lacks, computed from its saved rows.

    Results saved before a row-only check existed still get it: it needs no
    model, only the rows, so the card shows what the current checks say about
    the stored numbers. An added flag carries ``"added_from_rows": True``;
    ``gradient_masking`` is recomputed. Flags already present are left as saved.
    """
    have = {f.get("name") for f in results.get("flags", [])}
    added = [dict(check(results.get("attacks", [])), added_from_rows=True)
             for name, check in ROW_FLAGS.items() if name not in have]
    added = [f for f in added if f["evaluated"]]  # an n/a row adds nothing to a saved file's card
    if not added:
        return results
    flags = list(results.get("flags", [])) + added
    order = {name: i for i, name in enumerate(FLAGS)}
    flags.sort(key=lambda f: order.get(f.get("name"), len(order)))
    return {**results, "flags": flags, "gradient_masking": gradient_masking(flags)}


# ----------------------------------------------------------------- the registry
@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """One gradient-masking (or evaluation-reliability) check, declared once.

    Attributes:
        name: The flag's name in results files, cards and the leaderboard.
        kind: ``"masking"`` (counts towards ``gradient_masking``), ``"convergence"`` (the plain white-box rows
            understate the attacker; read the stronger row) or ``"randomness"`` (a property of the model).
        threshold: What the check compares against (a fraction, or a description), stored in results files.
        sentence: What a card says when the flag triggers (the flag's evidence follows in brackets).
        suite_check: ``(cheap, attack_rows) -> flag`` for checks recomputed once the suite's rows exist
            (`finalize_flags`); ``None`` for checks that `run_masking_checks` computes from the model alone.
        from_rows: The check needs only the saved rows, so `refresh_flags` adds it to results saved before
            it existed.
    """

    name: str
    kind: str
    threshold: object
    sentence: str
    suite_check: object = None
    from_rows: bool = False


def _rows(check):
    return lambda cheap, rows: check(rows)


#: Every flag, in the order results files and cards list them.
FLAGS = {spec.name: spec for spec in (
    FlagSpec("zero_gradients", "masking", ZERO_GRADIENT_SHARE,
             "Many inputs have an exactly-zero cross-entropy input gradient: gradient-based CE attacks have "
             "nothing to follow there"),
    FlagSpec("ce_margin_gap", "masking", CE_MARGIN_GAP,
             "Cross-entropy attacks are much weaker than the same attack with the margin loss on the logits: the "
             "softmax is saturated (GI1/GI2 and logits augmentation scale the logits), so cross-entropy gradients "
             "vanish in float32 while logit-based attacks (C&W, EAD, PGD-margin, DLR) are unaffected"),
    FlagSpec("iterative_weaker_than_single_step", "masking", SINGLE_STEP_LEAD,
             "An iterative attack is weaker than a single-step one, a sign of a non-informative gradient",
             suite_check=lambda cheap, rows: check_iterative_vs_single(cheap["eps_sweep"], rows)),
    FlagSpec("no_increase_with_eps", "masking", EPS_DROP,
             "Success does not rise with ε as it must for a working attack"),
    FlagSpec("unbounded_not_100", "masking", UNBOUNDED_SUCCESS,
             "Even an unbounded attack (ε = 1) does not reach 100 %: the attack, not the model, is failing"),
    FlagSpec("black_box_stronger_than_white_box", "masking", BLACK_BOX_LEAD,
             "A black-box attack beats the white-box ones: the white-box gradients are misleading",
             suite_check=lambda cheap, rows: check_black_box(rows, cheap.get("square"), cheap.get("square_error"))),
    FlagSpec("transfer_stronger_than_white_box", "masking", TRANSFER_LEAD,
             "Examples crafted on another model fool this model more often than the same attack using its own "
             "gradients: its white-box rows of that attack measure the gradients, not robustness",
             suite_check=_rows(check_transfer), from_rows=True),
    FlagSpec("eot_stronger_than_plain", "masking", EOT_LEAD,
             "EOT / fixed-randomness attacks beat plain PGD: single-sample gradients of this random model are "
             "misleading", suite_check=_rows(check_eot)),
    FlagSpec("autoattack_square_gain", "masking", AUTOATTACK_SQUARE_GAIN,
             "Within AutoAttack, the gradient-free Square attack fooled images that APGD and FAB could not "
             "(AutoAttack's own warning): the gradients mislead",
             suite_check=_rows(check_autoattack_square), from_rows=True),
    FlagSpec("white_box_not_converged", "convergence", "95 % Wilson upper bound",
             "Another attack beats the best plain white-box gradient attack of the same budget beyond its 95 % "
             "interval: the plain gradient rows understate what an attacker achieves; read the stronger row",
             suite_check=_rows(check_convergence), from_rows=True),
    FlagSpec("randomized", "randomness", 0.0,
             "The model is random at inference: single-sample white-box numbers are unreliable; read the EOT and "
             "fixed-randomness rows"),
)}
#: Read off `FLAGS` (kept for results files and callers): name -> threshold, the names in order, and the
#: checks `refresh_flags` can compute from saved rows.
THRESHOLDS = {name: spec.threshold for name, spec in FLAGS.items() if name != "randomized"}
FLAG_NAMES = tuple(FLAGS)
ROW_FLAGS = {name: (lambda spec: lambda rows: spec.suite_check(None, rows))(spec)
             for name, spec in FLAGS.items() if spec.from_rows}


def public_sweep(sweep):
    """The sweep without its private per-image masks (for results.json)."""
    return {k: v for k, v in sweep.items() if not k.startswith("_")}


def _bar(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)
