"""Adversarial attacks written with numpy and `keras.ops` (any Keras 3 backend).

Backend-specific autodiff lives in `hardened.attacks._grad` only. Common API::

    from hardened.attacks import get_attack, eot, fixed_randomness, bpda
    attack = get_attack("pgd", eps=0.3, steps=40, loss="margin")
    x_adv = attack.generate(model, x, y)                  # untargeted
    x_adv = get_attack("cw_l2", targeted=True).generate(model, x, y, target=t)
    x_adv = eot(attack, n=10).generate(randomized_model, x, y)

Every attack has ``name``, ``params`` (all hyper-parameters, defaults
included), ``norm``, ``targeted`` and ``gradient_free``; ``generate`` returns
float32 numpy images in [0, 1] of the input's shape.
"""

from hardened.attacks import losses
from hardened.attacks.adaptive import (
    BPDA,
    EOT,
    FixedRandomness,
    StraightThrough,
    bpda,
    bpda_model,
    eot,
    fixed_randomness,
)
from hardened.attacks.apgd import APGD, APGDT
from hardened.attacks.autoattack import AutoAttack
from hardened.attacks.base import ATTACKS, Attack, check_labels, get_attack, list_attacks, norms
from hardened.attacks.cw import EAD, CarliniWagnerL2
from hardened.attacks.ddn import DDN
from hardened.attacks.deepfool import DeepFool, deepfool_rho
from hardened.attacks.fab import FABT
from hardened.attacks.gradient import BIM, FGSM, MIM, PGD
from hardened.attacks.jsma import JSMA
from hardened.attacks.losses import LOSSES
from hardened.attacks.square import Square, SquareL2
from hardened.attacks.substitute import Substitute, build_substitute
from hardened.attacks.zoo_attack import ZOO

__all__ = [
    "APGD", "APGDT", "ATTACKS", "Attack", "AutoAttack", "BIM", "BPDA", "CarliniWagnerL2", "DDN", "DeepFool", "EAD", "EOT", "FABT", "FGSM",
    "FixedRandomness", "JSMA", "LOSSES", "MIM", "PGD", "Square", "SquareL2", "StraightThrough", "Substitute", "ZOO",
    "bpda", "bpda_model", "build_substitute", "check_labels", "deepfool_rho", "eot", "fixed_randomness",
    "get_attack", "list_attacks", "losses", "norms",
]
