"""Auto-PGD (Croce & Hein, 2020): APGD-CE / APGD-DLR and the targeted APGD-T, linf and l2.

A step-size-free PGD: momentum 0.75, a first step of ``2 eps``, and at fixed
checkpoints (after 22, 41, 57, 70, 80, 87, 93 and 99 of 100 iterations) the
step is halved, and the iterate reset to the best point found, for every
example whose loss rose in fewer than ``rho`` of the last steps or did not
improve since the previous checkpoint. These are the settings of AutoAttack's
reference implementation; each iteration (gradient, momentum step,
projection, best-so-far and the checkpoint rule) is one compiled program
(`_grad.make_step`), so the state never leaves the backend between steps.
"""

import numpy as np
from keras import ops

from hardened.attacks import _grad, _ops
from hardened.attacks.base import Attack, register
from hardened.attacks.losses import get_loss

#: APGD's momentum (``alpha`` in the paper).
MOMENTUM = 0.75


def checkpoints(steps):
    """Iteration counts after which APGD's step-size rule is applied (reference schedule).

    The first check comes after ``max(int(0.22 * steps), 1)`` iterations; each
    following interval shrinks by ``max(int(0.03 * steps), 1)`` down to
    ``max(int(0.06 * steps), 1)``.

    Returns:
        ``[(iteration_count, interval_length), ...]``.
    """
    k = max(int(0.22 * steps), 1)
    k_min, decr = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, done = [], 0
    while done + k <= steps:
        done += k
        out.append((done, k))
        k = max(k - decr, k_min)
    return out


def random_start(x0, eps, norm, rng):
    """APGD's start: a random direction scaled to the ball's surface (linf: max-norm, l2: l2-norm), in [0, 1]."""
    if norm == "linf":
        t = rng.uniform(-1.0, 1.0, size=x0.shape).astype(np.float32)
        scale = np.abs(t.reshape(len(t), -1)).max(axis=1)
    else:
        t = rng.standard_normal(size=x0.shape).astype(np.float32)
        scale = np.sqrt((t.reshape(len(t), -1) ** 2).sum(axis=1))
    t = t / np.maximum(scale, 1e-12).reshape((-1,) + (1,) * (x0.ndim - 1))
    return np.clip(x0 + eps * t, 0.0, 1.0).astype(np.float32)


def _step_body(objective, norm):
    """One APGD iteration plus, where ``check`` is set, the checkpoint rule."""

    def body(fns, x, x_old, grad, x_best, g_best, loss_best, x_adv, fooled, step, prev_loss, ups,
             loss_last, reduced_last, x0, y_oh, t_oh, lab, eps, momentum, check, k_rho):
        # Momentum step (reference: z = P(x + eta * dir(g)); x' = P(x + a (z - x) + (1 - a) (x - x_old))).
        delta_old = x - x_old
        z = _ops.project(x + _ops.bcast(step, x) * _ops.step_direction(grad, norm), x0, eps, norm)
        z = _ops.project(x + momentum * (z - x) + (1.0 - momentum) * delta_old, x0, eps, norm)
        x_old, x = x, z
        loss, grad, logits = fns.grad(x, objective, y_oh, t_oh)
        hit = _ops.success(logits, lab, False)  # APGD-T too: success is any misclassification
        x_adv = _ops.select(hit, x, x_adv)
        fooled = ops.logical_or(fooled, hit)
        better = ops.greater(loss, loss_best)
        x_best = _ops.select(better, x, x_best)
        g_best = _ops.select(better, grad, g_best)
        loss_best = ops.where(better, loss, loss_best)
        ups = ups + ops.cast(ops.greater(loss, prev_loss), "float32")
        prev_loss = loss
        # Checkpoint: halve the step (and restart from the best point) where the loss oscillated
        # (rose in at most rho of the interval's steps) or did not improve since the last check.
        stalled = ops.logical_and(ops.logical_not(reduced_last), ops.greater_equal(loss_last, loss_best))
        halve = ops.logical_and(check, ops.logical_or(ops.less_equal(ups, k_rho), stalled))
        step = ops.where(halve, step / 2.0, step)
        x = _ops.select(halve, x_best, x)
        grad = _ops.select(halve, g_best, grad)
        reduced_last = ops.where(check, halve, reduced_last)
        loss_last = ops.where(check, loss_best, loss_last)
        ups = ops.where(check, ops.zeros_like(ups), ups)
        return (x, x_old, grad, x_best, g_best, loss_best, x_adv, fooled, step, prev_loss, ups, loss_last,
                reduced_last)

    return body


def _init_body(objective):
    def body(fns, x, y_oh, t_oh):
        return fns.grad(x, objective, y_oh, t_oh)

    return body


class _APGDBase(Attack):
    """Shared run of one APGD restart on a batch (used by `APGD` and `APGDT`)."""

    def _validate(self):
        self._check_number("eps", low=0.0)
        self._check_int("steps", low=1)
        self._check_int("restarts", low=1)
        self._check_number("rho", low=0.0, high=1.0)

    def _single_run(self, model, x0, y, target, rng, objective):
        """One APGD run from a random start; returns (best adversarial-or-highest-loss point, fooled mask)."""
        p = self.params
        norm, eps, steps = self.norm, p["eps"], p["steps"]
        T = _grad.to_tensor
        y_oh, t_oh = self._onehots(y, target)
        y_oh_t, t_oh_t, lab = T(y_oh), T(t_oh), T(y, "int32")
        x0_t = T(x0)
        init = _grad.make_step(model, ("apgd_init", objective), _init_body(objective),
                               grad_samples=self._grad_samples)
        step_fn = _grad.make_step(model, ("apgd_step", objective, norm), _step_body(objective, norm),
                                  grad_samples=self._grad_samples)
        x = T(random_start(x0, eps, norm, rng))
        loss, grad, logits = init(x, y_oh_t, t_oh_t)
        fooled = _ops.success(logits, lab, False)
        n = len(x0)
        state = [x, x, grad, x, grad, loss, x, fooled, T(np.full(n, 2.0 * eps, np.float32)),
                 T(np.zeros(n, np.float32)), T(np.zeros(n, np.float32)), loss, T(np.ones(n, bool), "bool")]
        consts = (x0_t, y_oh_t, t_oh_t, lab, T(eps), T(MOMENTUM))
        marks = dict(checkpoints(steps))
        no, yes = T(False, "bool"), T(True, "bool")
        k_rho = {k: T(k * p["rho"]) for k in set(marks.values())}
        zero_k = T(0.0)
        for i in range(steps):
            done = i + 1
            is_check = done in marks
            # The first iteration has no previous step: full step, no momentum.
            consts_i = consts if i > 0 else consts[:-1] + (T(1.0),)
            state = list(step_fn(*state, *consts_i, yes if is_check else no,
                                 k_rho[marks[done]] if is_check else zero_k))
            if is_check and bool(np.all(_grad.to_numpy(state[7]))):
                break  # every example is fooled: later steps cannot change that
        x_best, x_adv, fooled = _grad.to_numpy(state[3], state[6], state[7])
        out = np.where(fooled.reshape((-1,) + (1,) * (x0.ndim - 1)), x_adv, x_best)
        return out.astype(np.float32), fooled

    def _restarts(self, model, x, y, rng, objective, target=None, out=None, fooled=None):
        """Run ``restarts`` APGD runs, each on the examples not fooled yet; fills ``out`` / ``fooled``."""
        if out is None:
            out, fooled = x.copy(), np.zeros(len(x), bool)
        for _ in range(self.params["restarts"]):
            todo = np.flatnonzero(~fooled)
            if len(todo) == 0:
                break
            adv, hit = self._single_run(model, x[todo], y[todo], None if target is None else target[todo], rng,
                                        objective)
            improve = hit | ~fooled[todo]
            out[todo[improve]] = adv[improve]
            fooled[todo] |= hit
        return out, fooled


@register
class APGD(_APGDBase):
    """APGD (Croce & Hein, 2020) on the CE, DLR or margin loss; untargeted.

    Args:
        eps: Perturbation budget.
        norm: ``"linf"`` or ``"l2"``.
        steps: Iterations per restart (AutoAttack: 100).
        restarts: Runs from fresh random starts, each on the examples not yet fooled.
        loss: ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR) or ``"margin"``.
        rho: Share of rising steps below which a checkpoint halves the step (0.75).
        seed: Seed of the random starts.
    """

    name = "apgd"
    norm = "linf"
    defaults = {"eps": 0.3, "norm": "linf", "steps": 100, "restarts": 1, "loss": "ce", "rho": 0.75,
                "targeted": False, "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_loss_param(("ce", "dlr", "margin"))
        if self.params["targeted"]:
            raise ValueError("apgd: targeted=True is not supported; use get_attack('apgd_t') (APGD-T).")

    def _attack_batch(self, model, x, y, target, rng):
        objective = get_loss(self._loss_name(), False)
        return self._restarts(model, x, y, rng, objective)[0]


@register
class APGDT(_APGDBase):
    """APGD-T (Croce & Hein, 2020): targeted DLR towards each of the top ``n_targets`` other classes.

    Untargeted in effect, as in AutoAttack: for the k-th most likely other
    class of the clean logits (k = 2, 3, ...), a run maximises the targeted
    DLR loss ``(z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` on the examples
    still classified correctly; success is any misclassification.

    Args:
        eps: Perturbation budget.
        norm: ``"linf"`` or ``"l2"``.
        steps: Iterations per run (AutoAttack: 100).
        restarts: Runs per target class.
        n_targets: Target classes tried (AutoAttack: 9).
        rho: As in `APGD`.
        seed: Seed of the random starts.
    """

    name = "apgd_t"
    norm = "linf"
    defaults = {"eps": 0.3, "norm": "linf", "steps": 100, "restarts": 1, "n_targets": 9, "rho": 0.75,
                "seed": 0}

    def _validate(self):
        super()._validate()
        self._check_int("n_targets", low=1)

    def _attack_batch(self, model, x, y, target, rng):
        k = self._num_classes
        if k < 4:
            raise ValueError(f"apgd_t: the targeted DLR loss needs at least 4 classes, the model has {k}.")
        objective = get_loss("dlr", True)
        order = np.argsort(self._forward(model)(x), axis=1)  # clean logits, ascending
        out, fooled = x.copy(), np.zeros(len(x), bool)
        for rank in range(2, min(self.params["n_targets"], k - 1) + 2):
            out, fooled = self._restarts(model, x, y, rng, objective, target=order[:, -rank], out=out,
                                         fooled=fooled)
            if fooled.all():
                break
        return out
