"""Decoupled direction and norm (Rony et al., 2019): a fast minimal-L2 attack."""

import math

import numpy as np
from keras import ops

from hardened.attacks import _grad, _ops
from hardened.attacks.base import Attack, norms, project_l2, register


@register
class DDN(Attack):
    """DDN: gradient steps on the direction, multiplicative steps on the norm.

    Follows the authors' reference implementation: the normalised loss
    gradient is added to ``delta`` with a cosine-annealed step (1 -> 0.01);
    the norm ``eps`` shrinks by ``(1 - gamma)`` while the iterate is
    adversarial and grows by ``(1 + gamma)`` otherwise; ``delta`` is rescaled
    to ``eps`` and clipped to the image box. A zero gradient is replaced by a
    random direction (as in the reference code). Returns the smallest
    adversarial perturbation found (the input where none was found). Each
    iteration is one compiled backend program (`_grad.make_step`).

    Args:
        steps: Iterations.
        init_norm: Initial ``eps``.
        gamma: Norm update factor.
        max_norm: If set, perturbations are finally projected onto this L2
            ball (a norm-bounded attack).
        loss: ``"ce"`` (the paper's), ``"margin"``, ``"dlr"`` or ``"ce_sigmoid"``.
        targeted: Targeted variant.
        seed: Seed of the random directions.
    """

    name = "ddn"
    norm = "l2"
    defaults = {"steps": 100, "init_norm": 1.0, "gamma": 0.05, "max_norm": None, "loss": "ce",
                "targeted": False, "seed": 0}

    def _validate(self):
        self._check_int("steps", low=1)
        self._check_number("init_norm", low=0.0, low_open=True)
        self._check_number("gamma", low=0.0, high=1.0, low_open=True, high_open=True)
        self._check_number("max_norm", low=0.0, allow_none=True)
        self._check_loss_param()

    def _step(self, model, objective):
        targeted = self.targeted

        def body(fns, delta, eps, best_l2, best_delta, x, y_oh, t_oh, lab, noise, lr, worst, gamma):
            l2 = _ops.l2(delta)
            _, grad, logits = fns.grad(x + delta, objective, y_oh, t_oh)
            adv = _ops.success(logits, lab, targeted)
            better = ops.logical_and(adv, l2 < best_l2)
            best_l2 = ops.where(better, l2, best_l2)
            best_delta = _ops.select(better, delta, best_delta)
            # A zero gradient gets a random direction, as in the reference code.
            zero = _ops.l2(grad) == 0
            grad = _ops.select(zero, noise, grad)
            delta = delta + lr * _ops.normalize_l2(grad)
            eps = ops.minimum(eps * ops.where(adv, 1.0 - gamma, 1.0 + gamma), worst)
            delta = delta * _ops.bcast(eps / ops.maximum(_ops.l2(delta), 1e-12), delta)
            delta = ops.clip(x + delta, 0.0, 1.0) - x
            return delta, eps, best_l2, best_delta, ops.any(zero)

        key = ("ddn", objective, targeted)
        return _grad.make_step(model, key, body, grad_samples=self._grad_samples)

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        y_oh, t_oh = self._onehots(y, target)
        objective = self._objective()
        step = self._step(model, objective)
        T = _grad.to_tensor
        lab = T(target if self.targeted else y, "int32")
        worst = norms(np.maximum(x, 1.0 - x), "l2")
        consts = (T(x), T(y_oh), T(t_oh), lab)
        delta, eps = T(np.zeros_like(x)), T(np.full(n, p["init_norm"], np.float32))
        best_l2, best_delta = T(worst), T(np.zeros_like(x))
        worst_t, gamma = T(worst), T(p["gamma"])
        noise = T(rng.standard_normal(x.shape).astype(np.float32))
        for i in range(p["steps"]):
            # torch's CosineAnnealingLR(T_max=steps, eta_min=0.01), stepped before each iteration
            lr = 0.01 + (1.0 - 0.01) * (1 + math.cos(math.pi * (i + 1) / p["steps"])) / 2
            delta, eps, best_l2, best_delta, used = step(delta, eps, best_l2, best_delta, *consts, noise, T(lr),
                                                         worst_t, gamma)
            if bool(_grad.to_numpy(used)):  # a direction is used once; draw the next only when one was
                noise = T(rng.standard_normal(x.shape).astype(np.float32))
        delta, best_l2, best_delta = _grad.to_numpy(delta, best_l2, best_delta)
        # The final iterate too (the reference loop checks before each step only).
        logits = self._forward(model)(x + delta)
        l2 = norms(delta, "l2")
        better = self._success(logits, y, target) & (l2 < best_l2)
        best_delta[better] = delta[better]
        if p["max_norm"] is not None:
            best_delta = project_l2(best_delta, p["max_norm"])
        return np.clip(x + best_delta, 0.0, 1.0)
