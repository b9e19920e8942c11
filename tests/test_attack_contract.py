"""One contract over every registered attack (the scikit-learn way): shape, dtype, range, threat-model ball,
reproducibility for a seed. A new attack without an example here fails `test_every_attack_has_an_example`.

Cheap settings (few steps / queries): the contract does not depend on strength, and the behaviour tests in
test_attacks.py check what the attacks achieve.
"""

import keras
import numpy as np
import pytest

from hardened.attacks import ATTACKS, get_attack
from hardened.attacks._toy import toy_problem

N = 12
EPS = 0.1
#: name -> constructor parameters for the contract (registered name, cheap settings).
EXAMPLES = {
    "fgsm": {"eps": EPS},
    "bim": {"eps": EPS, "steps": 3},
    "mim": {"eps": EPS, "steps": 3},
    "pgd": {"eps": EPS, "steps": 3},
    "apgd": {"eps": EPS, "steps": 5},
    "apgd_t": {"eps": EPS, "steps": 5, "n_targets": 2},
    "fab_t": {"eps": EPS, "steps": 5, "n_targets": 2},
    "square": {"eps": EPS, "queries": 20},
    "square_l2": {"eps": 0.5, "queries": 20},
    "autoattack": {"eps": EPS, "steps": 5, "queries": 20, "n_targets": 2},
    "cw_l2": {"steps": 5, "binary_search_steps": 2},
    "ead": {"steps": 5, "binary_search_steps": 2},
    "ddn": {"steps": 5},
    "deepfool": {"steps": 5},
    "jsma": {"gamma": 0.1},
    "zoo": {"steps": 3, "coords": 16},
    "substitute": {"n_seed": 20, "rounds": 1, "epochs": 1, "eps": EPS},
}


@pytest.fixture(scope="module")
def problem():
    model, _, (x, y), _ = toy_problem(n_train=300, n_test=100)
    return model, x[:N], y[:N], (y[:N] + 1) % 10


def test_every_attack_has_an_example():
    assert set(EXAMPLES) == set(ATTACKS), ("add a contract example for every registered attack: missing "
                                           f"{sorted(set(ATTACKS) - set(EXAMPLES))}, stale "
                                           f"{sorted(set(EXAMPLES) - set(ATTACKS))}")


def _run(name, problem, seed=0):
    model, x, y, target = problem
    attack = get_attack(name, **EXAMPLES[name], seed=seed)
    keras.utils.set_random_seed(seed)
    return attack, attack.generate(model, x, y, target=target if attack.targeted else None, batch_size=8)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_attack_contract(name, problem):
    _, x, _, _ = problem
    attack, x_adv = _run(name, problem)
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    eps = attack.params.get("eps")
    delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    norm = "linf" if name == "substitute" else attack.norm  # the substitute crafts FGSM (linf) on its copy
    if eps is not None and norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-5
    elif eps is not None and norm == "l2":
        assert np.sqrt((delta ** 2).sum(1)).max() <= eps + 1e-4
    _, again = _run(name, problem)
    np.testing.assert_array_equal(np.asarray(again), x_adv, err_msg=f"{name} is not reproducible for a seed")
