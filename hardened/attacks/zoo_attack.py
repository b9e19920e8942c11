"""ZOO (Chen et al., 2017): zeroth-order C&W attack with coordinate-wise ADAM."""

import numpy as np

from hardened.attacks.base import Attack, margin_np, register


@register
class ZOO(Attack):
    """ZOO-ADAM: symmetric finite differences on random coordinates, C&W objective.

    Minimises ``||x' - x||_2^2 + c * f(x')`` with ``f`` the C&W hinge on log
    probabilities (``log p_y - max_{j != y} log p_j``, which equals the logit
    margin) using only model outputs. Each iteration picks ``coords`` random
    coordinates per image, estimates their partial derivatives with
    ``(L(x + h e_i) - L(x - h e_i)) / 2h`` (2 * coords + 1 queries) and takes a
    coordinate-wise ADAM step, projected on [0, 1] (ZOO's box projection,
    not the tanh change of variables). No attack-space reduction or
    importance sampling (meant for small images). Returns the adversarial
    example of smallest L2 found (the input where none was found).

    After `generate`, ``last_queries`` holds the queries spent per image.

    Args:
        steps: Iterations per binary-search step (small default budget).
        coords: Coordinates updated per iteration.
        h: Finite-difference step.
        lr: ADAM learning rate.
        initial_const: First c.
        binary_search_steps: Outer steps on c.
        confidence: kappa.
        abort_early: Stop a c when the loss stalls.
        targeted: Targeted variant.
        seed: Seed of the coordinate sampling.
    """

    name = "zoo"
    norm = "l2"
    gradient_free = True
    defaults = {"steps": 200, "coords": 128, "h": 1e-4, "lr": 1e-2, "initial_const": 10.0,
                "binary_search_steps": 1, "confidence": 0.0, "abort_early": True, "targeted": False, "seed": 0}

    #: Rows per model call when evaluating the finite-difference batch.
    max_batch = 4096

    def _validate(self):
        self._check_int("steps", low=1)
        self._check_int("coords", low=1)
        self._check_number("h", low=0.0, low_open=True)
        self._check_number("lr", low=0.0, low_open=True)
        self._check_number("initial_const", low=0.0, low_open=True)
        self._check_int("binary_search_steps", low=1)
        self._check_number("confidence", low=0.0)
        self._check_bool("abort_early")

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """See `Attack.generate`; also sets ``last_queries``."""
        self._queries = []
        out = super().generate(model, x, y, target=target, batch_size=batch_size, progress=progress)
        self.last_queries = np.concatenate(self._queries) if self._queries else np.zeros(0, np.int64)
        return out

    def _objective_np(self, logits, lab, const):
        m = margin_np(logits, lab)  # z_lab - max other == log p_lab - max log p_other
        kappa = self.params["confidence"]
        return const * (np.maximum(-m + kappa, 0.0) if self.targeted else np.maximum(m + kappa, 0.0))

    def _is_adv(self, logits, lab):
        m = margin_np(logits, lab)
        kappa = self.params["confidence"]
        return m >= kappa if self.targeted else m <= -kappa

    def _attack_batch(self, model, x, y, target, rng):
        p = self.params
        n = len(x)
        lab = target if self.targeted else y
        feat = int(np.prod(x.shape[1:]))
        k = min(p["coords"], feat)
        forward = self._forward(model, max_batch=self.max_batch)
        flat0 = x.reshape(n, feat)
        lower = np.zeros(n, np.float32)
        upper = np.full(n, 1e10, np.float32)
        const = np.full(n, p["initial_const"], np.float32)
        best_l2 = np.full(n, np.inf, np.float32)
        best = flat0.copy()
        queries = np.zeros(n, np.int64)
        rows = np.arange(n)[:, None]
        b1, b2 = 0.9, 0.999
        h = p["h"]
        for _ in range(p["binary_search_steps"]):
            cur = flat0.copy()
            m = np.zeros_like(cur)
            v = np.zeros_like(cur)
            epoch = np.ones_like(cur)
            success = np.zeros(n, dtype=bool)
            prev = np.inf
            check_every = max(p["steps"] // 10, 1)
            for it in range(p["steps"]):
                idx = np.stack([rng.choice(feat, size=k, replace=False) for _ in range(n)])
                batch = np.repeat(cur[:, None, :], 2 * k + 1, axis=1)  # (n, 2k+1, F)
                ar = np.arange(k)
                batch[np.arange(n)[:, None], 1 + ar[None, :], idx] += h
                batch[np.arange(n)[:, None], 1 + k + ar[None, :], idx] -= h
                logits = forward(batch.reshape((-1,) + x.shape[1:])).reshape(n, 2 * k + 1, -1)
                queries += 2 * k + 1
                l2 = np.sum((batch - flat0[:, None, :]) ** 2, axis=2)
                lab_rep = np.repeat(lab, 2 * k + 1)
                f = self._objective_np(logits.reshape(n * (2 * k + 1), -1), lab_rep,
                                       np.repeat(const, 2 * k + 1)).reshape(n, 2 * k + 1)
                total = l2 + f
                # Row 0 is the current point: track success and the best example.
                adv = self._is_adv(logits[:, 0], lab)
                improve = adv & (l2[:, 0] < best_l2)
                best_l2 = np.where(improve, l2[:, 0], best_l2)
                best[improve] = cur[improve]
                success |= adv
                if p["abort_early"] and it % check_every == 0:
                    loss = float(total[:, 0].sum())
                    if loss > prev * 0.9999:
                        break
                    prev = loss
                grad = (total[:, 1:k + 1] - total[:, k + 1:]) / (2 * h)
                mt = b1 * m[rows, idx] + (1 - b1) * grad
                vt = b2 * v[rows, idx] + (1 - b2) * grad ** 2
                ep = epoch[rows, idx]
                corr = np.sqrt(1 - b2 ** ep) / (1 - b1 ** ep)
                m[rows, idx], v[rows, idx] = mt, vt
                cur[rows, idx] = np.clip(cur[rows, idx] - p["lr"] * corr * mt / (np.sqrt(vt) + 1e-8), 0.0, 1.0)
                epoch[rows, idx] = ep + 1
            # The last update has not been looked at yet.
            logits = forward(cur.reshape(x.shape))
            queries += 1
            l2 = np.sum((cur - flat0) ** 2, axis=1)
            adv = self._is_adv(logits, lab)
            improve = adv & (l2 < best_l2)
            best_l2 = np.where(improve, l2, best_l2)
            best[improve] = cur[improve]
            success |= adv
            upper = np.where(success, np.minimum(upper, const), upper)
            lower = np.where(success, lower, np.maximum(lower, const))
            const = np.where(upper < 1e9, (lower + upper) / 2, const * 10).astype(np.float32)
        self._queries.append(queries)
        return best.reshape(x.shape)
