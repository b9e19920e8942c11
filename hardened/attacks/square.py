"""Square attack, linf (Andriushchenko et al., 2020): score-based, gradient-free."""

import numpy as np

from hardened.attacks.base import Attack, eval_loss, margin_np, register


def p_selection(p_init, it, n_iters):
    """The paper's piecewise-constant schedule of the square size (fraction of pixels)."""
    it = int(it / n_iters * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                       (6000, 128), (8000, 256), (10000, 512)):
        if it <= bound:
            return p_init / div
    return p_init


def _padded(fn, xs, size):
    """``fn`` on ``xs`` padded to the next power of two rows, at most ``size``.

    Few compiled shapes (JAX compiles once per shape), yet a call shrinks with
    the images still being attacked: padding every call to the full batch made
    the last unfooled image of a batch cost a whole batch's forward pass for
    the rest of the query budget (5000 queries x 4 batches x 128 images on an
    undefended CIFAR-10 net: ~70 min instead of a few).
    """
    m = len(xs)
    rows = min(int(size), 1 << max(m - 1, 0).bit_length())
    if m >= rows:
        return fn(xs)
    pad = np.concatenate([xs, np.repeat(xs[-1:], rows - m, axis=0)])
    return fn(pad)[:m]


@register
class Square(Attack):
    """Random search with square-shaped linf updates; only queries logits.

    Faithful to the authors' reference code: vertical-stripe initialisation,
    then per iteration one square window per image whose content is set to
    ``x +- eps`` (one sign per channel), accepted if the loss decreases.
    Images stop being queried once fooled. The square side follows
    `p_selection` relative to the query budget.

    After `generate`, ``last_queries`` holds the number of queries per image.

    Args:
        eps: linf budget.
        queries: Query budget per image (the paper's ``n_iters``).
        p_init: Initial fraction of pixels in a square.
        loss: ``"margin"`` (default) or ``"ce"``; ``"margin"`` decides success.
        targeted: Targeted variant.
        seed: Seed of the random search.
    """

    name = "square"
    norm = "linf"
    gradient_free = True
    defaults = {"eps": 0.3, "queries": 5000, "p_init": 0.05, "loss": "margin", "targeted": False, "seed": 0}

    def _validate(self):
        self._check_number("eps", low=0.0)
        self._check_int("queries", low=1)
        self._check_number("p_init", low=0.0, high=1.0, low_open=True)
        self._check_loss_param(("margin", "ce"))

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """See `Attack.generate`; also sets ``last_queries``."""
        self._queries = []
        out = super().generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
        self.last_queries = np.concatenate(self._queries) if self._queries else np.zeros(0, np.int64)
        return out

    def _losses(self, logits, y, target, y_oh, t_oh):
        """(loss to minimise, margin: > 0 while not yet successful)."""
        lab = target if self.targeted else y
        marg = margin_np(logits, lab)
        marg = -marg if self.targeted else marg
        if self.params["loss"] == "margin":
            return marg, marg
        return -eval_loss(self._objective(), logits, y_oh, t_oh), marg

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        eps, n_iters = p["eps"], p["queries"]
        n, h, w, c = x.shape
        forward = self._forward(model)
        y_oh, t_oh = self._onehots(y, target)
        x_best = np.clip(x + eps * rng.choice([-1.0, 1.0], size=(n, 1, w, c)), 0.0, 1.0).astype(np.float32)
        loss_min, margin_min = self._losses(forward(x_best), y, target, y_oh, t_oh)
        n_queries = np.ones(n, dtype=np.int64)
        n_features = h * w * c
        for i_iter in range(n_iters - 1):
            todo = np.flatnonzero(margin_min > 0)
            if len(todo) == 0:
                break
            x_curr, x_best_curr = x[todo], x_best[todo]
            deltas = x_best_curr - x_curr
            frac = p_selection(p["p_init"], i_iter, n_iters)
            s = int(round(np.sqrt(frac * n_features / c)))
            s = min(max(s, 1), h - 1) if h > 1 else 1
            for i in range(len(todo)):
                ch = rng.integers(0, max(h - s, 1))
                cw = rng.integers(0, max(w - s, 1))
                win = (i, slice(ch, ch + s), slice(cw, cw + s))
                x_win = x_curr[win]
                best_win = x_best_curr[win]
                # Draw until the window actually changes the current best image.
                for _ in range(100):
                    if not np.all(np.abs(np.clip(x_win + deltas[win], 0, 1) - best_win) < 1e-7):
                        break
                    deltas[win] = eps * rng.choice([-1.0, 1.0], size=(1, 1, c))
            x_new = np.clip(x_curr + deltas, 0.0, 1.0).astype(np.float32)
            logits = _padded(forward, x_new, n)
            sub = (y[todo], None if target is None else target[todo], y_oh[todo], t_oh[todo])
            loss, marg = self._losses(logits, *sub)
            improved = loss < loss_min[todo]
            loss_min[todo] = np.where(improved, loss, loss_min[todo])
            margin_min[todo] = np.where(improved, marg, margin_min[todo])
            x_best[todo] = np.where(improved.reshape(-1, 1, 1, 1), x_new, x_best_curr)
            n_queries[todo] += 1
        self._queries.append(n_queries)
        return x_best


def _eta_rectangles(a, b):
    """The reference's ``a x b`` block of nested rectangles weighted 1 / (ring + 1)^2, unit l2 norm."""
    delta = np.zeros((a, b), np.float32)
    xc, yc = a // 2 + 1, b // 2 + 1
    c0, c1 = xc - 1, yc - 1
    for ring in range(max(xc, yc)):
        delta[max(c0, 0):min(c0 + 2 * ring + 1, a), max(0, c1):min(c1 + 2 * ring + 1, b)] += 1.0 / (ring + 1) ** 2
        c0, c1 = c0 - 1, c1 - 1
    return delta / np.sqrt((delta ** 2).sum())


def square_eta(s, rng):
    """Square-L2's ``s x s`` update pattern: two opposite-signed halves, randomly transposed, unit l2 norm."""
    delta = np.zeros((s, s), np.float32)
    delta[: s // 2] = _eta_rectangles(s // 2, s)
    delta[s // 2:] = -_eta_rectangles(s - s // 2, s)
    delta /= np.sqrt((delta ** 2).sum())
    return delta.T if rng.random() > 0.5 else delta


def _l2(v):
    return np.sqrt((v.reshape(len(v), -1).astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)


@register
class SquareL2(Square):
    """Square attack, l2 (Andriushchenko et al., 2020), as in AutoAttack's reference code.

    Starts from a grid of the ``square_eta`` patterns scaled to the l2 sphere;
    each iteration moves the perturbation's mass from a second random window
    into a first one (windows shared by the batch, as in the reference) with
    a fresh pattern, keeps the total l2 norm at ``eps`` and accepts the
    change per image if the loss decreases. Images stop once fooled.

    Args:
        eps: l2 budget.
        queries: Query budget per image.
        p_init: Initial fraction of pixels in a square.
        loss: ``"margin"`` (default) or ``"ce"``; ``"margin"`` decides success.
        targeted: Targeted variant.
        seed: Seed of the random search.
    """

    name = "square_l2"
    norm = "l2"

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        eps, n_iters = p["eps"], p["queries"]
        n, h, w, c = x.shape
        forward = self._forward(model)
        y_oh, t_oh = self._onehots(y, target)
        shape = (-1, 1, 1, 1)
        # Initialisation: a 5 x 5 grid of patterns with a random sign per image and channel.
        delta = np.zeros_like(x)
        s = max(h // 5, 1)
        start = (h - s * 5) // 2
        vh = start
        for _ in range(h // s):
            vw = start
            for _ in range(w // s):
                delta[:, vh:vh + s, vw:vw + s, :] += (square_eta(s, rng)[None, :, :, None]
                                                     * rng.choice([-1.0, 1.0], size=(n, 1, 1, c)))
                vw += s
            vh += s
        x_best = np.clip(x + delta / (_l2(delta) + 1e-12).reshape(shape) * eps, 0.0, 1.0).astype(np.float32)
        loss_min, margin_min = self._losses(forward(x_best), y, target, y_oh, t_oh)
        n_queries = np.ones(n, dtype=np.int64)
        n_features = h * w * c
        for i_iter in range(n_iters):
            todo = np.flatnonzero(margin_min > 0)
            if len(todo) == 0:
                break
            x_curr, x_best_curr = x[todo], x_best[todo]
            delta = x_best_curr - x_curr
            s = max(int(round(np.sqrt(p_selection(p["p_init"], i_iter, n_iters) * n_features / c))), 3)
            s += 1 - s % 2  # odd
            s = min(s, h)
            vh, vw = rng.integers(0, max(h - s, 1)), rng.integers(0, max(w - s, 1))
            vh2, vw2 = rng.integers(0, max(h - s, 1)), rng.integers(0, max(w - s, 1))
            win1 = (slice(None), slice(vh, vh + s), slice(vw, vw + s))
            win2 = (slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
            mask = np.zeros((1, h, w, 1), np.float32)
            mask[0, vh:vh + s, vw:vw + s] = 1.0
            mask[0, vh2:vh2 + s, vw2:vw2 + s] = 1.0
            norms_window_1 = np.sqrt((delta[win1] ** 2).sum(axis=(1, 2), keepdims=True))
            norms_image = _l2(delta).reshape(shape)
            norms_windows = _l2(delta * mask).reshape(shape)
            new = square_eta(s, rng)[None, :, :, None] * rng.choice([-1.0, 1.0], size=(len(todo), 1, 1, c))
            new = new + delta[win1] / (1e-12 + norms_window_1)
            budget = np.maximum(eps ** 2 - norms_image ** 2, 0.0) / c + norms_windows ** 2
            new = new / (1e-12 + np.sqrt((new ** 2).sum(axis=(1, 2), keepdims=True))) * np.sqrt(budget)
            delta[win2] = 0.0
            delta[win1] = new
            x_new = np.clip(x_curr + delta / (_l2(delta) + 1e-12).reshape(shape) * eps, 0.0, 1.0)
            x_new = x_new.astype(np.float32)
            sub = (y[todo], None if target is None else target[todo], y_oh[todo], t_oh[todo])
            loss, marg = self._losses(_padded(forward, x_new, n), *sub)
            improved = loss < loss_min[todo]
            loss_min[todo] = np.where(improved, loss, loss_min[todo])
            improved |= marg <= 0
            margin_min[todo] = np.where(improved, marg, margin_min[todo])
            x_best[todo] = np.where(improved.reshape(shape), x_new, x_best_curr)
            n_queries[todo] += 1
        self._queries.append(n_queries)
        return x_best
