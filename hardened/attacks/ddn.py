"""Decoupled direction and norm (Rony et al., 2019): a fast minimal-L2 attack."""

import math

import numpy as np

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
    adversarial perturbation found (the input where none was found).

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

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        shape = (-1,) + (1,) * (x.ndim - 1)
        y_oh, t_oh = self._onehots(y, target)
        loss_grad = self._loss_grad(model, self._objective())
        delta = np.zeros_like(x)
        eps = np.full(n, p["init_norm"], np.float32)
        worst = norms(np.maximum(x, 1.0 - x), "l2")
        best_l2 = worst.copy()
        best_delta = np.zeros_like(x)
        for i in range(p["steps"]):
            # torch's CosineAnnealingLR(T_max=steps, eta_min=0.01), stepped before each iteration
            lr = 0.01 + (1.0 - 0.01) * (1 + math.cos(math.pi * (i + 1) / p["steps"])) / 2
            l2 = norms(delta, "l2")
            _, grad, logits = loss_grad(x + delta, y_oh, t_oh)
            adv = self._success(logits, y, target)
            better = adv & (l2 < best_l2)
            best_l2 = np.where(better, l2, best_l2)
            best_delta[better] = delta[better]
            gnorm = norms(grad, "l2")
            zero = gnorm == 0
            if zero.any():
                grad[zero] = rng.standard_normal(grad[zero].shape).astype(np.float32)
                gnorm = norms(grad, "l2")
            delta = delta + lr * grad / gnorm.reshape(shape)
            eps = eps * np.where(adv, 1.0 - p["gamma"], 1.0 + p["gamma"]).astype(np.float32)
            eps = np.minimum(eps, worst)
            dnorm = norms(delta, "l2")
            delta = delta * (eps / np.maximum(dnorm, 1e-12)).reshape(shape)
            delta = (np.clip(x + delta, 0.0, 1.0) - x).astype(np.float32)
        # The final iterate too (the reference loop checks before each step only).
        logits = self._forward(model)(x + delta)
        l2 = norms(delta, "l2")
        better = self._success(logits, y, target) & (l2 < best_l2)
        best_delta[better] = delta[better]
        if p["max_norm"] is not None:
            best_delta = project_l2(best_delta, p["max_norm"])
        return np.clip(x + best_delta, 0.0, 1.0)
