"""Carlini & Wagner L2 (2017) and the elastic-net attack EAD (Chen et al., 2018)."""

import numpy as np
from keras import ops

from hardened.attacks.base import Attack, margin_np, norms, register
from hardened.attacks.losses import margin


def cw_objective(logits, lab_onehot, const, kappa):
    """``const * max(z_y - max_{j != y} z_j + kappa, 0)`` (untargeted; minimised)."""
    return const * ops.maximum(-margin(logits, lab_onehot) + kappa, 0.0)


def cw_objective_targeted(logits, lab_onehot, const, kappa):
    """``const * max(max_{j != t} z_j - z_t + kappa, 0)`` (targeted; minimised)."""
    return const * ops.maximum(margin(logits, lab_onehot) + kappa, 0.0)


class _MinNorm(Attack):
    """Shared machinery: C&W's binary search over the constant c."""

    def _validate(self):
        self._check_number("confidence", low=0.0)
        self._check_number("initial_const", low=0.0, low_open=True)
        self._check_int("binary_search_steps", low=1)
        self._check_int("steps", low=1)
        self._check_number("lr", low=0.0, low_open=True)
        self._check_bool("abort_early")

    def _labels(self, y, target):
        return target if self.targeted else y

    def _f_loss(self):
        return cw_objective_targeted if self.targeted else cw_objective

    def _f_np(self, logits, lab, const):
        """numpy value of the C&W objective (to be minimised)."""
        m = margin_np(logits, lab)  # z_lab - max other
        kappa = self.params["confidence"]
        val = np.maximum(-m + kappa, 0.0) if self.targeted else np.maximum(m + kappa, 0.0)
        return const * val

    def _adv_with_confidence(self, logits, lab):
        """C&W's success test: the decision must hold with margin ``confidence``."""
        z = logits.copy()
        idx = np.arange(len(z))
        kappa = self.params["confidence"]
        if self.targeted:
            z[idx, lab] -= kappa
            return z.argmax(axis=1) == lab
        z[idx, lab] += kappa
        return z.argmax(axis=1) != lab

    @staticmethod
    def _update_const(success, const, lower, upper):
        upper = np.where(success, np.minimum(upper, const), upper)
        lower = np.where(success, lower, np.maximum(lower, const))
        bracketed = upper < 1e9
        const = np.where(bracketed, (lower + upper) / 2, const * 10)
        return const.astype(np.float32), lower, upper


@register
class CarliniWagnerL2(_MinNorm):
    """C&W L2: Adam in tanh space on ``||x' - x||_2^2 + c * f(x')``, binary search on c.

    ``f`` is C&W's margin on logits with confidence ``kappa``. Returns per
    example the adversarial example of smallest L2 norm found (the input
    itself where none was found).

    Args:
        confidence: kappa, required margin of the adversarial decision.
        initial_const: First c.
        binary_search_steps: Outer steps on c (c x 10 until bracketed).
        steps: Adam iterations per c.
        lr: Adam learning rate.
        abort_early: Stop a c when the total loss stalls (checked every
            ``steps // 10`` iterations, C&W's rule).
        targeted: Targeted variant.
        seed: Unused (deterministic).
    """

    name = "cw_l2"
    norm = "l2"
    defaults = {"confidence": 0.0, "initial_const": 1e-3, "binary_search_steps": 9, "steps": 1000, "lr": 1e-2,
                "abort_early": True, "targeted": False, "seed": 0}

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        lab = self._labels(y, target)
        lab_oh = np.eye(self._num_classes, dtype=np.float32)[lab]
        kappa = np.float32(p["confidence"])
        loss_grad = self._loss_grad(model, self._f_loss())
        timg = np.arctanh((x - 0.5) / 0.5 * 0.999999).astype(np.float32)
        x_ref = (np.tanh(timg) * 0.5 + 0.5).astype(np.float32)
        lower = np.zeros(n, np.float32)
        upper = np.full(n, 1e10, np.float32)
        const = np.full(n, p["initial_const"], np.float32)
        best_l2 = np.full(n, np.inf, np.float32)
        best_adv = x.copy()
        b1, b2, eps_adam = 0.9, 0.999, 1e-8
        for outer in range(p["binary_search_steps"]):
            if p["binary_search_steps"] >= 10 and outer == p["binary_search_steps"] - 1:
                const = np.where(upper < 1e9, upper, const).astype(np.float32)  # C&W's final repeat
            w = np.zeros_like(x)
            m = np.zeros_like(x)
            v = np.zeros_like(x)
            success = np.zeros(n, dtype=bool)
            prev = np.inf
            check_every = max(p["steps"] // 10, 1)
            for it in range(p["steps"]):
                th = np.tanh(w + timg)
                new = (th * 0.5 + 0.5).astype(np.float32)
                fvals, gx, logits = loss_grad(new, lab_oh, const, kappa)
                diff = new - x_ref
                l2 = np.sum(diff.reshape(n, -1) ** 2, axis=1)
                adv = self._adv_with_confidence(logits, lab)
                improve = adv & (l2 < best_l2)
                best_l2 = np.where(improve, l2, best_l2)
                best_adv[improve] = new[improve]
                success |= adv
                total = float(l2.sum() + fvals.sum())
                if p["abort_early"] and it % check_every == 0:
                    if total > prev * 0.9999:
                        break
                    prev = total
                g = (2.0 * diff + gx) * 0.5 * (1.0 - th ** 2)
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                t = it + 1
                lr_t = p["lr"] * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                w = (w - lr_t * m / (np.sqrt(v) + eps_adam)).astype(np.float32)
            const, lower, upper = self._update_const(success, const, lower, upper)
        return best_adv


@register
class EAD(_MinNorm):
    """Elastic-net attack: ISTA / FISTA on ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1``.

    Follows Cleverhans' ``ElasticNetMethod``: the gradient step on the smooth
    part (at the FISTA slack point) is followed by the L1 shrinkage, projected
    on [0, 1]; the learning rate decays as ``lr * (1 - k / steps)^0.5``; c is
    binary-searched as in C&W. The best example per input is chosen by the
    decision rule (elastic-net or L1 distance).

    Args:
        beta: L1 weight.
        decision_rule: ``"EN"`` or ``"L1"``.
        confidence: kappa.
        initial_const: First c.
        binary_search_steps: Outer steps on c.
        steps: Iterations per c.
        lr: Initial learning rate.
        fista: FISTA momentum (else plain ISTA).
        abort_early: Stop a c when the loss stalls.
        targeted: Targeted variant.
        seed: Unused (deterministic).
    """

    name = "ead"
    norm = "l1"
    defaults = {"beta": 1e-2, "decision_rule": "EN", "confidence": 0.0, "initial_const": 1e-3,
                "binary_search_steps": 9, "steps": 1000, "lr": 1e-2, "fista": True, "abort_early": True,
                "targeted": False, "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_number("beta", low=0.0)
        self._check_choice("decision_rule", ("EN", "L1"))
        self._check_bool("fista")

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        beta = p["beta"]
        lab = self._labels(y, target)
        lab_oh = np.eye(self._num_classes, dtype=np.float32)[lab]
        kappa = np.float32(p["confidence"])
        loss_grad = self._loss_grad(model, self._f_loss())
        forward = self._forward(model)
        lower = np.zeros(n, np.float32)
        upper = np.full(n, 1e10, np.float32)
        const = np.full(n, p["initial_const"], np.float32)
        best_dist = np.full(n, np.inf, np.float32)
        best_adv = x.copy()
        for outer in range(p["binary_search_steps"]):
            if p["binary_search_steps"] >= 10 and outer == p["binary_search_steps"] - 1:
                const = np.where(upper < 1e9, upper, const).astype(np.float32)
            xk = x.copy()
            yk = x.copy()
            success = np.zeros(n, dtype=bool)
            prev = np.inf
            check_every = max(p["steps"] // 10, 1)
            for it in range(p["steps"]):
                lr = p["lr"] * (1.0 - it / p["steps"]) ** 0.5
                _, gx, _ = loss_grad(yk, lab_oh, const, kappa)
                z = yk - lr * (2.0 * (yk - x) + gx)
                new = _shrink(z, x, beta)
                yk = (new + (it / (it + 3.0)) * (new - xk)).astype(np.float32) if p["fista"] else new
                xk = new
                logits = forward(xk)
                d = (xk - x).reshape(n, -1)
                l2 = np.sum(d ** 2, axis=1)
                l1 = np.sum(np.abs(d), axis=1)
                dist = l2 + beta * l1 if p["decision_rule"] == "EN" else l1
                adv = self._adv_with_confidence(logits, lab)
                improve = adv & (dist < best_dist)
                best_dist = np.where(improve, dist, best_dist)
                best_adv[improve] = xk[improve]
                success |= adv
                if p["abort_early"] and it % check_every == 0:
                    total = float(np.sum(self._f_np(logits, lab, const)) + l2.sum() + beta * l1.sum())
                    if total > prev * 0.9999:
                        break
                    prev = total
            const, lower, upper = self._update_const(success, const, lower, upper)
        return best_adv


def _shrink(z, x0, beta):
    """ISTA's projected shrinkage-thresholding of ``z`` around ``x0`` onto [0, 1]."""
    diff = z - x0
    upper = np.minimum(z - beta, 1.0)
    lower = np.maximum(z + beta, 0.0)
    out = np.where(diff > beta, upper, np.where(diff < -beta, lower, x0))
    return out.astype(np.float32)


def l2_distortion(x_adv, x):
    """Per-example L2 distance (handy for C&W / EAD reports)."""
    return norms(np.asarray(x_adv) - np.asarray(x), "l2")
