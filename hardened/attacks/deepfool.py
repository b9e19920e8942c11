"""DeepFool (Moosavi-Dezfooli et al., 2016), l2 and linf, and its robustness metric rho."""

import numpy as np

from hardened.attacks.base import Attack, norms, register
from hardened.attacks.losses import weighted_logits


@register
class DeepFool(Attack):
    """Minimal-perturbation attack by iterative linearisation of the decision boundaries.

    At each step, for every candidate class ``k`` the boundary with the
    current class is linearised (``f_k = z_k - z_y``, ``w_k = grad f_k``); the
    closest one (``|f_k| / ||w_k||_q``, q dual to the norm) gives the step.
    Steps accumulate in ``r``; the iterate is ``clip(x + (1 + overshoot) r)``
    (the foolbox formulation), until the label changes or ``steps`` run out.

    After `generate`, ``last_norms`` holds the per-example norm of the final
    perturbation and ``last_success`` whether the label changed.

    Args:
        norm: ``"l2"`` or ``"linf"``.
        overshoot: Relative overshoot of the accumulated perturbation.
        steps: Maximum iterations.
        candidates: Number of most likely classes considered (None: all).
        seed: Unused (deterministic).
    """

    name = "deepfool"
    norm = "l2"
    defaults = {"norm": "l2", "overshoot": 0.02, "steps": 50, "candidates": 10, "seed": 0}

    def _validate(self):
        self._check_number("overshoot", low=0.0)
        self._check_int("steps", low=1)
        cand = self._check_int("candidates", low=2, allow_none=True)
        self.params["candidates"] = cand

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """See `Attack.generate`; also sets ``last_norms`` and ``last_success``."""
        self._norm_parts, self._succ_parts = [], []
        out = super().generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
        x = np.asarray(x, np.float32)
        self.last_norms = norms(out - x, self.norm) if len(x) else np.zeros(0, np.float32)
        self.last_success = (np.concatenate(self._succ_parts) if self._succ_parts else np.zeros(0, bool))
        return out

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        k_all = self._num_classes
        forward = self._forward(model)
        loss_grad = self._loss_grad(model, weighted_logits)
        logits0 = forward(x)
        order = np.argsort(-logits0, axis=1, kind="stable")
        n_cand = k_all if p["candidates"] is None else min(p["candidates"], k_all)
        # Candidate classes other than y: the most likely ones first.
        others = np.stack([row[row != lab][: n_cand - 1] for row, lab in zip(order, y)])
        eye = np.eye(k_all, dtype=np.float32)
        r_tot = np.zeros_like(x)
        x_adv = x.copy()
        active = np.argmax(logits0, axis=1) == y
        shape = (-1,) + (1,) * (x.ndim - 1)
        for _ in range(p["steps"]):
            if not active.any():
                break
            fs, gs = [], []
            for j in range(others.shape[1]):
                w = eye[others[:, j]] - eye[y]
                f, g, logits = loss_grad(x_adv, w)
                if j == 0:
                    active &= np.argmax(logits, axis=1) == y
                    if not active.any():
                        break
                fs.append(f)
                gs.append(g.reshape(n, -1))
            if not active.any():
                break
            fs = np.stack(fs, axis=1)  # (n, k-1): z_k - z_y, negative while y wins
            gs = np.stack(gs, axis=1)  # (n, k-1, F)
            if self.norm == "l2":
                gnorm = np.sqrt(np.sum(gs.astype(np.float64) ** 2, axis=2)).astype(np.float32)
            else:
                gnorm = np.sum(np.abs(gs), axis=2)
            dist = np.abs(fs) / (gnorm + 1e-8)
            best = np.argmin(dist, axis=1)
            rows = np.arange(n)
            fb, gb, nb = np.abs(fs[rows, best]), gs[rows, best], gnorm[rows, best]
            # The reference code's step: (|f| / ||w|| + 1e-4) along the boundary normal.
            size = fb / (nb + 1e-8) + 1e-4
            if self.norm == "l2":
                step = (size / (nb + 1e-8))[:, None] * gb
            else:
                step = size[:, None] * np.sign(gb)
            step = step.reshape(x.shape) * active.reshape(shape)
            r_tot = r_tot + step.astype(np.float32)
            x_adv = np.clip(x + (1.0 + p["overshoot"]) * r_tot, 0.0, 1.0).astype(np.float32)
        self._succ_parts.append(np.argmax(forward(x_adv), axis=1) != y)
        return x_adv


def deepfool_rho(model, x, y, norm="l2", batch_size=128, return_norms=False, **params):
    """DeepFool robustness ``rho = mean ||r(x)||_p / ||x||_p`` (Moosavi-Dezfooli et al.).

    The mean is over inputs the model classifies correctly and DeepFool
    fools; failures are left out (including them would need an infinite
    distance), so the number is, if anything, an underestimate of robustness.

    Args:
        model: A `keras.Model` returning logits.
        x: Images ``(N, H, W, C)`` in [0, 1].
        y: Integer labels.
        norm: ``"l2"`` (the paper's) or ``"linf"``.
        batch_size: Images attacked together.
        return_norms: Also return the per-example perturbation norms and the
            mask of examples that count in the mean.
        **params: Other `DeepFool` parameters (overshoot, steps, candidates).

    Returns:
        ``rho`` (float; NaN if no example counts), or ``(rho, norms, counted)``.
    """
    attack = DeepFool(norm=norm, **params)
    x = np.asarray(x, np.float32)
    x_adv = attack.generate(model, x, y, batch_size=batch_size)
    clean = attack._forward(model, max_batch=batch_size)(x)
    counted = (np.argmax(clean, axis=1) == np.asarray(y)) & attack.last_success
    ratio = attack.last_norms / np.maximum(norms(x, attack.norm), 1e-12)
    rho = float(np.mean(ratio[counted])) if counted.any() else float("nan")
    del x_adv
    if return_norms:
        return rho, attack.last_norms, counted
    return rho
