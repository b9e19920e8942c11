"""Jacobian-based saliency map attack (Papernot et al., 2016), pairwise, as in Cleverhans."""

import numpy as np

from hardened.attacks.base import Attack, register
from hardened.attacks.losses import weighted_logits, weighted_probs, weighted_sigmoid

# Pairwise scores take N * F^2 floats; keep one chunk below this many.
_MAX_PAIR_ELEMENTS = 2 ** 24


@register
class JSMA(Attack):
    """Targeted L0 attack: repeatedly saturate the most salient pair of pixels.

    Each iteration computes ``alpha = d F_t / dx`` and ``beta = d sum_{j != t}
    F_j / dx`` and picks the pair ``(p, q)`` (not yet modified, ``p != q``)
    maximising ``-(alpha_p + alpha_q) * (beta_p + beta_q)`` subject to
    ``alpha_p + alpha_q > 0`` and ``beta_p + beta_q < 0`` (signs swapped for
    ``theta < 0``); both pixels move by ``theta`` (clipped to [0, 1]). It stops
    when the target wins or ``gamma`` of the input features were modified.
    Features are all H*W*C values (as Cleverhans). When no pair satisfies the
    sign conditions, the pair with the largest ``alpha_p + alpha_q`` is taken
    instead of Cleverhans' arbitrary pair (0, 0).

    Args:
        variant: ``"F"``: saliency on softmax probabilities (JSMA-F);
            ``"Z"``: on logits (JSMA-Z).
        theta: Change applied to a chosen feature, in (0, 1] or [-1, 0).
        gamma: Maximum fraction of features modified, in (0, 1].
        targeted: Must be True (JSMA is a targeted attack).
        seed: Unused (deterministic).
    """

    name = "jsma"
    norm = "l0"
    defaults = {"variant": "F", "theta": 1.0, "gamma": 0.1, "targeted": True, "seed": 0}
    _accepts_loss_override = True  # bpda(softmax_to_sigmoid=True): JSMA-F on sigmoids

    def _validate(self):
        self._check_choice("variant", ("F", "Z"))
        theta = self._check_number("theta", low=-1.0, high=1.0)
        if theta == 0:
            self._error("theta", "non-zero")
        self._check_number("gamma", low=0.0, high=1.0, low_open=True)
        if not self.params["targeted"]:
            raise ValueError("jsma is a targeted attack: targeted must be True (pass target labels to generate).")

    def _output_fn(self):
        if self.params["variant"] == "Z":
            return weighted_logits
        return weighted_sigmoid if self._loss_override == "ce_sigmoid" else weighted_probs

    def _attack_batch(self, model, x, y, target, rng):
        n_feat = int(np.prod(x.shape[1:]))
        chunk = max(1, _MAX_PAIR_ELEMENTS // max(1, n_feat * n_feat))
        if chunk >= len(x):
            return self._attack_chunk(model, x, target)
        return np.concatenate([self._attack_chunk(model, x[i:i + chunk], target[i:i + chunk])
                               for i in range(0, len(x), chunk)])

    def _attack_chunk(self, model, x, target):
        p = self.params
        n, shape = len(x), x.shape
        n_feat = int(np.prod(shape[1:]))
        theta, increase = p["theta"], p["theta"] > 0
        max_iters = int(np.floor(n_feat * p["gamma"] / 2))
        loss_grad = self._loss_grad(model, self._output_fn())
        t_oh = np.eye(self._num_classes, dtype=np.float32)[target]
        # One call gives both gradients: rows [0, n) weight the target, [n, 2n) the others.
        weights = np.concatenate([t_oh, 1.0 - t_oh])
        flat = x.reshape(n, n_feat).copy()
        domain = flat < 1.0 if increase else flat > 0.0
        off_diag = ~np.eye(n_feat, dtype=bool)
        rows = np.arange(n)
        for _ in range(max_iters):
            xb = flat.reshape(shape)
            _, grad, logits = loss_grad(np.concatenate([xb, xb]), weights)
            done = np.argmax(logits[:n], axis=-1) == target
            active = ~done & (domain.sum(axis=1) >= 2)
            if not active.any():
                break
            alpha = grad[:n].reshape(n, n_feat)
            beta = grad[n:].reshape(n, n_feat)
            a2 = alpha[:, :, None] + alpha[:, None, :]
            b2 = beta[:, :, None] + beta[:, None, :]
            valid = domain[:, :, None] & domain[:, None, :] & off_diag
            cond = (a2 > 0) & (b2 < 0) if increase else (a2 < 0) & (b2 > 0)
            scores = np.where(valid & cond, -a2 * b2, -np.inf)
            best = scores.reshape(n, -1).argmax(axis=1)
            none = ~np.isfinite(scores.reshape(n, -1)[rows, best])
            if none.any():  # no pair meets the sign conditions: greedy on the target alone
                fallback = np.where(valid, a2 if increase else -a2, -np.inf).reshape(n, -1)
                best = np.where(none, fallback.argmax(axis=1), best)
            p1, p2 = best // n_feat, best % n_feat
            idx = rows[active]
            for pix in (p1[active], p2[active]):
                flat[idx, pix] = np.clip(flat[idx, pix] + theta, 0.0, 1.0)
                domain[idx, pix] = False
        return flat.reshape(shape)
