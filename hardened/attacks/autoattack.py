"""AutoAttack (Croce & Hein, 2020) on any Keras backend: an ensemble run in the reference order.

``standard``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000
queries), each on the images that every earlier attack left correctly
classified. ``rand`` (for randomized defenses): APGD-CE and APGD-DLR, each
gradient an average of 20 passes (EOT). Every component is a registered
attack of this package (`apgd`, `apgd_t`, `fab_t`, `square` /
`square_l2`), so it runs where Keras runs; none needs torch.

After `generate`, ``last_log`` lists per component how many images it
attacked and fooled, the robust accuracy left after it (as a share of the
images given) and its seconds: the per-attack log the masking checks read
(Square fooling images that APGD could not is AutoAttack's own warning sign
of gradient masking).
"""

import time

import numpy as np

from hardened.attacks.base import Attack, get_attack, register

#: ``rand`` version: gradient samples per step (the reference's ``eot_iter``).
RAND_EOT = 20


def components(version, norm, eps, seed, steps=100, queries=5000, n_targets=9):
    """The ``(name, attack)`` pairs AutoAttack runs, in order."""
    common = {"eps": eps, "norm": norm, "seed": seed, "steps": steps}
    if version == "standard":
        square = get_attack("square" if norm == "linf" else "square_l2", eps=eps, queries=queries, p_init=0.8,
                            loss="margin", seed=seed)
        return [("APGD-CE", get_attack("apgd", loss="ce", **common)),
                ("APGD-T", get_attack("apgd_t", n_targets=n_targets, **common)),
                ("FAB-T", get_attack("fab_t", n_targets=n_targets, **common)),
                ("Square", square)]
    return [("APGD-CE", get_attack("apgd", loss="ce", **common)._with_grad_samples(RAND_EOT)),
            ("APGD-DLR", get_attack("apgd", loss="dlr", **common)._with_grad_samples(RAND_EOT))]


@register
class AutoAttack(Attack):
    """AutoAttack, ``standard`` or ``rand``, linf or l2.

    Args:
        eps: Perturbation budget.
        norm: ``"linf"`` or ``"l2"`` (``"Linf"`` / ``"L2"`` accepted).
        version: ``"standard"`` (deterministic models) or ``"rand"``
            (randomized models: APGD-CE + APGD-DLR with EOT over 20 passes).
        steps: APGD / FAB iterations (reference: 100).
        queries: Square's query budget (reference: 5000).
        n_targets: Target classes of APGD-T and FAB-T (reference: 9).
        seed: Seed of every component's randomness.
    """

    name = "autoattack"
    norm = "linf"
    defaults = {"eps": 0.3, "norm": "linf", "version": "standard", "steps": 100, "queries": 5000,
                "n_targets": 9, "seed": 0}

    def _validate(self):
        self._check_number("eps", low=0.0)
        self._check_choice("version", ("standard", "rand"))
        self._check_int("steps", low=1)
        self._check_int("queries", low=1)
        self._check_int("n_targets", low=1)

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """See `Attack.generate`; sets ``last_log`` (one dict per component)."""
        x, y, _, _ = self._prepare(model, x, y, target, batch_size)
        p = self.params
        out = x.copy()
        robust = self._predict(model, x, batch_size) == y
        log = []
        for name, attack in components(p["version"], self.norm, p["eps"], p["seed"], p["steps"], p["queries"],
                                       p["n_targets"]):
            attack._grad_samples = max(attack._grad_samples, self._grad_samples)
            todo = np.flatnonzero(robust)
            start = time.perf_counter()
            fooled = np.zeros(0, int)
            if len(todo):
                adv = attack.generate(model, x[todo], y[todo], batch_size=batch_size, progress=progress)
                # As the reference: a component counts what a fresh forward pass misclassifies.
                hit = self._predict(model, adv, batch_size) != y[todo]
                fooled = todo[hit]
                out[fooled] = adv[hit]
                robust[fooled] = False
            log.append({"attack": name, "n_attacked": int(len(todo)), "n_fooled": int(len(fooled)),
                        "robust_accuracy": float(robust.mean()) if len(robust) else None,
                        "seconds": round(time.perf_counter() - start, 3)})
        self.last_log = log
        return self._finish(out, x)

    def _predict(self, model, x, batch_size):
        forward = self._forward(model, max_batch=batch_size)
        return np.argmax(forward(x), axis=1) if len(x) else np.zeros(0, int)
