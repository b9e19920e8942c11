"""Carlini & Wagner L2 (2017) and the elastic-net attack EAD (Chen et al., 2018)."""

import numpy as np
from keras import ops

from hardened.attacks import _grad, _ops
from hardened.attacks.base import Attack, norms, register
from hardened.attacks.losses import margin

_B1, _B2, _EPS_ADAM = 0.9, 0.999, 1e-8


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

    def _step(self, model):
        objective, targeted = self._f_loss(), self.targeted

        def body(fns, w, m, v, best_l2, best_adv, success, t, timg, x_ref, lab_oh, lab, const, kappa, lr):
            th = ops.tanh(w + timg)
            new = th * 0.5 + 0.5
            fvals, gx, logits = fns.grad(new, objective, lab_oh, const, kappa)
            diff = new - x_ref
            l2 = _ops.sq_l2(diff)
            adv = _adv_with_confidence(logits, lab_oh, lab, kappa, targeted)
            improve = ops.logical_and(adv, l2 < best_l2)
            best_l2 = ops.where(improve, l2, best_l2)
            best_adv = _ops.select(improve, new, best_adv)
            success = ops.logical_or(success, adv)
            total = ops.sum(l2) + ops.sum(fvals)
            # Adam on w (tanh space); the chain rule through tanh by hand, as C&W's code.
            g = (2.0 * diff + gx) * 0.5 * (1.0 - th * th)
            m = _B1 * m + (1 - _B1) * g
            v = _B2 * v + (1 - _B2) * g * g
            t = t + 1.0
            lr_t = lr * ops.sqrt(1 - ops.power(_B2, t)) / (1 - ops.power(_B1, t))
            w = w - lr_t * m / (ops.sqrt(v) + _EPS_ADAM)
            return w, m, v, best_l2, best_adv, success, t, total

        return _grad.make_step(model, ("cw_l2", objective, targeted), body, grad_samples=self._grad_samples)

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        lab = self._labels(y, target)
        lab_oh = np.eye(self._num_classes, dtype=np.float32)[lab]
        step = self._step(model)
        T = _grad.to_tensor
        timg_np = np.arctanh((x - 0.5) / 0.5 * 0.999999).astype(np.float32)
        timg = T(timg_np)
        x_ref = T(np.tanh(timg_np) * 0.5 + 0.5)
        consts = (timg, x_ref, T(lab_oh), T(lab, "int32"))
        kappa, lr = T(p["confidence"]), T(p["lr"])
        lower = np.zeros(n, np.float32)
        upper = np.full(n, 1e10, np.float32)
        const = np.full(n, p["initial_const"], np.float32)
        best_l2, best_adv = T(np.full(n, np.inf, np.float32)), T(x)
        check_every = max(p["steps"] // 10, 1)
        self.last_steps = 0
        for outer in range(p["binary_search_steps"]):
            if p["binary_search_steps"] >= 10 and outer == p["binary_search_steps"] - 1:
                const = np.where(upper < 1e9, upper, const).astype(np.float32)  # C&W's final repeat
            zeros = T(np.zeros_like(x))
            w, m, v, t = zeros, zeros, zeros, T(0.0)
            success = T(np.zeros(n, bool), "bool")
            const_t = T(const)
            prev = np.inf
            for it in range(p["steps"]):
                w, m, v, best_l2, best_adv, success, t, total = step(
                    w, m, v, best_l2, best_adv, success, t, *consts, const_t, kappa, lr)
                self.last_steps += 1
                # C&W's early abort, on the loss of the iterate this step evaluated (the update is
                # applied either way; a stopped run discards it).
                if p["abort_early"] and it % check_every == 0:
                    total = float(_grad.to_numpy(total))
                    if total > prev * 0.9999:
                        break
                    prev = total
            const, lower, upper = self._update_const(_grad.to_numpy(success), const, lower, upper)
        return _grad.to_numpy(best_adv)


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

    def _step(self, model):
        objective, targeted = self._f_loss(), self.targeted
        fista, en = self.params["fista"], self.params["decision_rule"] == "EN"

        def body(fns, xk, yk, best_dist, best_adv, success, it, x, lab_oh, lab, const, kappa, beta, lr0, steps):
            lr = lr0 * ops.sqrt(1.0 - it / steps)
            _, gx, _ = fns.grad(yk, objective, lab_oh, const, kappa)
            z = yk - lr * (2.0 * (yk - x) + gx)
            new = _shrink_ops(z, x, beta)
            yk = new + (it / (it + 3.0)) * (new - xk) if fista else new
            xk = new
            logits = fns.forward(xk)
            d = xk - x
            l2, l1 = _ops.sq_l2(d), _ops.l1(d)
            dist = l2 + beta * l1 if en else l1
            adv = _adv_with_confidence(logits, lab_oh, lab, kappa, targeted)
            improve = ops.logical_and(adv, dist < best_dist)
            best_dist = ops.where(improve, dist, best_dist)
            best_adv = _ops.select(improve, xk, best_adv)
            success = ops.logical_or(success, adv)
            total = ops.sum(objective(logits, lab_oh, const, kappa)) + ops.sum(l2) + beta * ops.sum(l1)
            return xk, yk, best_dist, best_adv, success, it + 1.0, total

        return _grad.make_step(model, ("ead", objective, targeted, fista, en), body,
                               grad_samples=self._grad_samples)

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        lab = self._labels(y, target)
        lab_oh = np.eye(self._num_classes, dtype=np.float32)[lab]
        step = self._step(model)
        T = _grad.to_tensor
        x_t = T(x)
        consts = (x_t, T(lab_oh), T(lab, "int32"))
        scalars = (T(p["confidence"]), T(p["beta"]), T(p["lr"]), T(float(p["steps"])))
        lower = np.zeros(n, np.float32)
        upper = np.full(n, 1e10, np.float32)
        const = np.full(n, p["initial_const"], np.float32)
        best_dist, best_adv = T(np.full(n, np.inf, np.float32)), x_t
        check_every = max(p["steps"] // 10, 1)
        self.last_steps = 0
        for outer in range(p["binary_search_steps"]):
            if p["binary_search_steps"] >= 10 and outer == p["binary_search_steps"] - 1:
                const = np.where(upper < 1e9, upper, const).astype(np.float32)
            xk, yk, it = x_t, x_t, T(0.0)
            success = T(np.zeros(n, bool), "bool")
            const_t = T(const)
            prev = np.inf
            for k in range(p["steps"]):
                xk, yk, best_dist, best_adv, success, it, total = step(
                    xk, yk, best_dist, best_adv, success, it, *consts, const_t, *scalars)
                self.last_steps += 1
                if p["abort_early"] and k % check_every == 0:
                    total = float(_grad.to_numpy(total))
                    if total > prev * 0.9999:
                        break
                    prev = total
            const, lower, upper = self._update_const(_grad.to_numpy(success), const, lower, upper)
        return _grad.to_numpy(best_adv)


def _shrink_ops(z, x0, beta):
    """`_shrink` on backend tensors."""
    diff = z - x0
    upper = ops.minimum(z - beta, 1.0)
    lower = ops.maximum(z + beta, 0.0)
    return ops.where(diff > beta, upper, ops.where(diff < -beta, lower, x0))


def _adv_with_confidence(logits, lab_oh, lab, kappa, targeted):
    """C&W's success test on backend tensors: the decision must hold with margin ``kappa``."""
    if targeted:
        return ops.equal(_ops.predicted(logits - kappa * lab_oh), lab)
    return ops.not_equal(_ops.predicted(logits + kappa * lab_oh), lab)


def l2_distortion(x_adv, x):
    """Per-example L2 distance (handy for C&W / EAD reports)."""
    return norms(np.asarray(x_adv) - np.asarray(x), "l2")
