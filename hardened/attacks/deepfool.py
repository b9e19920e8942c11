"""DeepFool (Moosavi-Dezfooli et al., 2016), l2 and linf, and its robustness metric rho."""

import numpy as np
from keras import ops

from hardened.attacks import _grad, _ops
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

    def _step(self, model, n_weights):
        linf = self.norm == "linf"

        def body(fns, x_adv, r_tot, active, x, y, weights, overshoot):
            logits, gs = fns.grads(x_adv, weighted_logits, [weights[:, j] for j in range(n_weights)])
            active = ops.logical_and(active, _ops.predicted(logits) == y)
            # (n, k-1): z_k - z_y, negative while y wins; (n, k-1, F): their input gradients
            fs = ops.stack([ops.sum(logits * weights[:, j], axis=1) for j in range(n_weights)], axis=1)
            gs = ops.stack([_ops.flat(g) for g in gs], axis=1)
            gnorm = ops.sum(ops.abs(gs), axis=2) if linf else ops.sqrt(ops.sum(ops.square(gs), axis=2))
            best = ops.argmin(ops.abs(fs) / (gnorm + 1e-8), axis=1)
            pick = ops.one_hot(best, n_weights, dtype=gs.dtype)
            fb = ops.sum(ops.abs(fs) * pick, axis=1)
            nb = ops.sum(gnorm * pick, axis=1)
            gb = ops.sum(gs * pick[:, :, None], axis=1)
            # The reference code's step: (|f| / ||w|| + 1e-4) along the boundary normal.
            size = fb / (nb + 1e-8) + 1e-4
            step = ops.sign(gb) * size[:, None] if linf else gb * (size / (nb + 1e-8))[:, None]
            step = ops.reshape(step, ops.shape(x)) * _ops.bcast(ops.cast(active, step.dtype), x)
            r_tot = r_tot + step
            x_adv = ops.clip(x + (1.0 + overshoot) * r_tot, 0.0, 1.0)
            return x_adv, r_tot, active, ops.any(active)

        return _grad.make_step(model, ("deepfool", self.norm, n_weights), body, grad_samples=self._grad_samples)

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        k_all = self._num_classes
        forward = self._forward(model)
        logits0 = forward(x)
        order = np.argsort(-logits0, axis=1, kind="stable")
        n_cand = k_all if p["candidates"] is None else min(p["candidates"], k_all)
        # Candidate classes other than y: the most likely ones first.
        others = np.stack([row[row != lab][: n_cand - 1] for row, lab in zip(order, y)])
        eye = np.eye(k_all, dtype=np.float32)
        weights = (eye[others] - eye[y][:, None, :]).astype(np.float32)  # (n, k-1, K): z_k - z_y
        active = np.argmax(logits0, axis=1) == y
        if active.any():
            step = self._step(model, others.shape[1])
            T = _grad.to_tensor
            consts = (T(x), T(y, "int32"), T(weights), T(p["overshoot"]))
            x_adv, r_tot, act = T(x), T(np.zeros_like(x)), T(active, "bool")
            for _ in range(p["steps"]):
                new_x, new_r, act, any_active = step(x_adv, r_tot, act, *consts)
                if not bool(_grad.to_numpy(any_active)):
                    break  # every image crossed before this step: x_adv stays the iterate that did
                x_adv, r_tot = new_x, new_r
            x_adv = _grad.to_numpy(x_adv).astype(np.float32)
        else:
            x_adv = x.copy()
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
