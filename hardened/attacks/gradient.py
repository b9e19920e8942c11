"""First-order norm-bounded attacks: FGSM, BIM, MIM and PGD (linf and l2)."""

import numpy as np

from hardened.attacks.base import (
    Attack,
    eval_loss,
    project,
    random_start,
    register,
    step_direction,
)


class _NormBounded(Attack):
    """Shared validation of ``eps`` / ``steps`` / ``step_size``."""

    #: Default step size as a multiple of eps / steps (None: attack has no steps).
    step_factor = None

    def _validate(self):
        self._check_number("eps", low=0.0)
        self._check_loss_param()
        if "steps" in self.params:
            steps = self._check_int("steps", low=1)
            step = self._check_number("step_size", low=0.0, allow_none=True)
            if step is None:
                self.params["step_size"] = self.step_factor * self.params["eps"] / steps


@register
class FGSM(_NormBounded):
    """Fast gradient sign method (Goodfellow et al., 2015); l2: fast gradient method.

    ``x' = clip(x + eps * sign(grad))`` (linf) or ``x + eps * grad / ||grad||_2`` (l2).

    Args:
        eps: Perturbation budget.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or ``"ce_sigmoid"``.
        targeted: Step towards ``target`` instead of away from ``y``.
        seed: Unused (no randomness); kept for a uniform interface.
    """

    name = "fgsm"
    norm = "linf"
    defaults = {"eps": 0.3, "norm": "linf", "loss": "ce", "targeted": False, "seed": 0}

    def _attack_batch(self, model, x, y, target, rng):
        y_oh, t_oh = self._onehots(y, target)
        _, grad, _ = self._loss_grad(model, self._objective())(x, y_oh, t_oh)
        eps = self.params["eps"]
        return project(x + eps * step_direction(grad, self.norm), x, eps, self.norm)


class _Iterative(_NormBounded):
    """Projected iterative ascent on the loss, optionally with momentum and restarts."""

    momentum = None

    def _run(self, model, x0, y, target, rng, start, decay=None):
        """One run from ``start``; returns (last iterate, best adversarial iterate, found mask)."""
        p = self.params
        eps, alpha, norm = p["eps"], p["step_size"], self.norm
        y_oh, t_oh = self._onehots(y, target)
        loss_grad = self._loss_grad(model, self._objective())
        x = start
        best = x0.copy()
        found = np.zeros(len(x0), dtype=bool)
        velocity = np.zeros_like(x0)
        for _ in range(p["steps"]):
            _, grad, logits = loss_grad(x, y_oh, t_oh)
            # Keep an iterate that was adversarial: later steps may leave the region.
            hit = self._success(logits, y, target)
            best[hit] = x[hit]
            found |= hit
            if decay is not None:  # MIM: accumulate L1-normalised gradients
                l1 = np.abs(grad).reshape(len(grad), -1).mean(axis=1)
                grad = grad / np.maximum(l1, 1e-12).reshape((-1,) + (1,) * (grad.ndim - 1))
                velocity = decay * velocity + grad
                grad = velocity
            x = project(x + alpha * step_direction(grad, norm), x0, eps, norm)
        logits = self._forward(model)(x)
        hit = self._success(logits, y, target)
        best[hit] = x[hit]
        found |= hit
        return x, best, found, logits


@register
class BIM(_Iterative):
    """Basic iterative method (Kurakin et al., 2017): iterated FGSM without random start.

    Args:
        eps: Perturbation budget.
        steps: Number of iterations.
        step_size: Step per iteration; default ``2.5 * eps / steps``.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or ``"ce_sigmoid"``.
        targeted: Targeted variant.
        keep_best: Return, per example, the last iterate that was adversarial
            (if any) rather than the final one.
        seed: Unused (deterministic).
    """

    name = "bim"
    norm = "linf"
    step_factor = 2.5
    defaults = {"eps": 0.3, "steps": 10, "step_size": None, "norm": "linf", "loss": "ce",
                "targeted": False, "keep_best": True, "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_bool("keep_best")

    def _attack_batch(self, model, x, y, target, rng):
        last, best, found, _ = self._run(model, x, y, target, rng, x.copy(), decay=self._decay())
        if not self.params["keep_best"]:
            return last
        return np.where(found.reshape((-1,) + (1,) * (x.ndim - 1)), best, last)

    def _decay(self):
        return None


@register
class MIM(BIM):
    """Momentum iterative method (Dong et al., 2018).

    ``g <- mu * g + grad / ||grad||_1``; ``x <- x + step_size * sign(g)``.

    Args:
        eps: Perturbation budget.
        steps: Number of iterations.
        step_size: Default ``eps / steps`` (the paper's choice).
        decay: Momentum decay ``mu``.
        norm, loss, targeted, keep_best, seed: As in `BIM`.
    """

    name = "mim"
    step_factor = 1.0
    defaults = {"eps": 0.3, "steps": 10, "step_size": None, "decay": 1.0, "norm": "linf", "loss": "ce",
                "targeted": False, "keep_best": True, "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_number("decay", low=0.0)

    def _decay(self):
        return self.params["decay"]


@register
class PGD(_Iterative):
    """Projected gradient descent (Madry et al., 2018), linf or l2, with random restarts.

    Each restart starts at a uniform random point of the eps-ball (the first
    one at ``x`` itself if ``random_start=False``). Per example the result is
    an adversarial iterate if any run found one, else the final iterate of
    the run with the highest loss.

    Args:
        eps: Perturbation budget.
        steps: Iterations per restart.
        step_size: Default ``2.5 * eps / steps``.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or ``"ce_sigmoid"``.
        random_start: Start the first run at a random point of the ball.
        restarts: Number of runs (examples already fooled are kept).
        targeted: Targeted variant.
        keep_best: Keep adversarial intermediate iterates (else a run returns
            its final iterate, as in the textbook / torchattacks PGD).
        seed: Seed of the random starts.
    """

    name = "pgd"
    norm = "linf"
    step_factor = 2.5
    defaults = {"eps": 0.3, "steps": 20, "step_size": None, "norm": "linf", "loss": "ce", "random_start": True,
                "restarts": 1, "targeted": False, "keep_best": True, "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_bool("random_start")
        self._check_bool("keep_best")
        self._check_int("restarts", low=1)

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        y_oh, t_oh = self._onehots(y, target)
        objective = self._objective()
        shape = (-1,) + (1,) * (x.ndim - 1)
        result = None
        found = np.zeros(len(x), dtype=bool)
        best_loss = np.full(len(x), -np.inf, dtype=np.float32)
        for r in range(p["restarts"]):
            start = random_start(x, p["eps"], self.norm, rng) if (p["random_start"] or r > 0) else x.copy()
            last, best, hit, logits = self._run(model, x, y, target, rng, start)
            if not p["keep_best"]:
                best, hit = last, self._success(logits, y, target)
            loss = eval_loss(objective, logits, y_oh, t_oh)
            if result is None:
                result = np.where(hit.reshape(shape), best, last)
                found, best_loss = hit.copy(), loss
                continue
            new_hit = hit & ~found
            better = ~found & ~hit & (loss > best_loss)
            result = np.where(new_hit.reshape(shape), best, result)
            result = np.where(better.reshape(shape), last, result)
            best_loss = np.where(better, loss, best_loss)
            found |= hit
            if found.all():
                break
        return result
