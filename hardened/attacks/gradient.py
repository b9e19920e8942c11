"""First-order norm-bounded attacks: FGSM, BIM, MIM and PGD (linf and l2)."""

import numpy as np
from keras import ops

from hardened.attacks import _grad, _ops
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
    """Projected iterative ascent on the loss, optionally with momentum and restarts.

    Each iteration (gradient, best-so-far bookkeeping, momentum, step and
    projection) is one compiled backend program (`_grad.make_step`); the
    iterate stays on the backend for the whole run.
    """

    momentum = None

    def _step(self, model, objective, decay):
        norm, targeted, mim = self.norm, self.targeted, decay is not None

        def body(fns, x, x0, best, found, velocity, y_oh, t_oh, lab, eps, alpha, mu):
            _, grad, logits = fns.grad(x, objective, y_oh, t_oh)
            # Keep an iterate that was adversarial: later steps may leave the region.
            hit = _ops.success(logits, lab, targeted)
            best = _ops.select(hit, x, best)
            found = ops.logical_or(found, hit)
            if mim:  # MIM: accumulate L1-normalised gradients
                grad = grad / _ops.bcast(ops.maximum(ops.mean(ops.abs(_ops.flat(grad)), axis=1), 1e-12), grad)
                velocity = mu * velocity + grad
                grad = velocity
            x = _ops.project(x + alpha * _ops.step_direction(grad, norm), x0, eps, norm)
            return x, best, found, velocity

        key = ("iterative", objective, norm, targeted, mim)
        return _grad.make_step(model, key, body, grad_samples=self._grad_samples)

    def _run(self, model, x0, y, target, rng, start, decay=None, final_check=True):
        """One run from ``start``; returns (last iterate, best adversarial iterate, found mask, last logits).

        ``final_check=False`` skips the forward pass on the last iterate (logits ``None``): a run that is
        not compared with another (one restart) returns the last iterate where no earlier one was
        adversarial, so that pass could only swap one adversarial example for another, at the cost of
        a forward pass (about half a PGD step).
        """
        p = self.params
        y_oh, t_oh = self._onehots(y, target)
        objective = self._objective()
        step = self._step(model, objective, decay)
        T = _grad.to_tensor
        lab = T(target if self.targeted else y, "int32")
        consts = (T(y_oh), T(t_oh), lab, T(p["eps"]), T(p["step_size"]), T(0.0 if decay is None else decay))
        x0_t = T(x0)
        x, best, found, velocity = T(start), x0_t, T(np.zeros(len(x0), bool), "bool"), T(np.zeros_like(x0))
        for _ in range(p["steps"]):
            x, best, found, velocity = step(x, x0_t, best, found, velocity, *consts)
        x, best, found = _grad.to_numpy(x, best, found)
        if not final_check:
            return x, best, found, None
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
        last, best, found, _ = self._run(model, x, y, target, rng, x.copy(), decay=self._decay(), final_check=False)
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
            last, best, hit, logits = self._run(model, x, y, target, rng, start, final_check=p["restarts"] > 1)
            if p["restarts"] == 1:  # nothing to compare: the best adversarial iterate, else the last one
                return last if not p["keep_best"] else np.where(hit.reshape(shape), best, last)
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
