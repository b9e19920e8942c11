"""Grey-box transfer: an attack crafted on a source model and scored on whatever model it is run against."""

import numpy as np

from hardened.attacks import _grad


class TransferAttack:
    """Craft with ``attack`` on the ``source`` model, whatever model ``generate`` is given.

    The evaluation scores the examples on the evaluated model, so the entry's
    success rate is the transfer rate. How often the examples fool the source
    itself is kept as a check that the crafting worked (a transfer rate near 0
    means little if it is low there too).

    Args:
        attack: A configured `hardened.attacks.Attack`.
        source: The `keras.Model` the examples are crafted on.
    """

    gradient_free = True  # no gradient of the evaluated model is used

    def __init__(self, attack, source):
        self.attack = attack
        self.source = source
        self.name = f"transfer({getattr(attack, 'name', attack)})"
        self.params = getattr(attack, "params", {})
        self.targeted = getattr(attack, "targeted", False)
        self._hits = 0
        self._total = 0

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """The attack's examples on ``source`` (``model`` is not queried); counts how many fool the source."""
        x_adv = np.asarray(self.attack.generate(self.source, x, y, target=target, batch_size=batch_size,
                                                progress=progress), dtype=np.float32)
        forward = _grad.make_forward(self.source, max_batch=max(int(batch_size), 1))
        pred = np.argmax(forward(x_adv), axis=-1)
        hit = pred == np.asarray(target) if target is not None else pred != np.asarray(y).reshape(-1)
        self._hits += int(np.sum(hit))
        self._total += int(len(hit))
        return x_adv

    def source_success_rate(self):
        """Share of the crafted examples that fool the source model (``None`` if none was crafted)."""
        return self._hits / self._total if self._total else None
