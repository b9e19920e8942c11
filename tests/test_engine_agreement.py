"""The compiled attack engine gives the numbers of the per-step numpy engine it replaced.

Reference numbers were measured with the numpy engine (commit 8cc03d5, torch backend)
on the toy problem below; the compiled engine (`hardened.attacks._grad.make_step`)
must reproduce them on every backend: success rate within sampling noise (two
standard errors of a binomial on the pairs attacked, at least one pair) and mean
distortion of the successful examples within 2 %. Attack settings are small for
test time; the engine, not the attack strength, is what is checked here.
"""

import numpy as np
import pytest

from hardened import attacks as A
from hardened.attacks._toy import toy_problem

CASES = {
    "cw_l2": dict(targeted=True, binary_search_steps=4, steps=100, initial_const=0.01, lr=0.01),
    "ead": dict(targeted=True, binary_search_steps=4, steps=100, initial_const=0.01, lr=0.01, beta=0.01),
    "jsma-F": dict(targeted=True, variant="F"),
    "jsma-Z": dict(targeted=True, variant="Z"),
    "ddn": dict(steps=50),
    "deepfool": dict(steps=50),
    "pgd": dict(eps=0.1, steps=20, seed=0),
}

# success rate, mean L2 / L1 / L0 of the successful examples, pairs attacked (numpy engine, 8cc03d5)
REFERENCE = {
    "cw_l2": {"success": 1.0, "l2": 0.9886, "l1": 6.5428, "l0": 63.25, "pairs": 48},
    "ead": {"success": 1.0, "l2": 1.0331, "l1": 4.882, "l0": 37.6042, "pairs": 48},
    "jsma-F": {"success": 0.3958, "l2": 1.6314, "l1": 3.7495, "l0": 5.5789, "pairs": 48},
    "jsma-Z": {"success": 0.1042, "l2": 1.5245, "l1": 3.5929, "l0": 6.0, "pairs": 48},
    "ddn": {"success": 1.0, "l2": 0.6593, "l1": 4.2075, "l0": 63.0625, "pairs": 16},
    "deepfool": {"success": 1.0, "l2": 0.6585, "l1": 4.207, "l0": 62.9375, "pairs": 16},
    "pgd": {"success": 0.3125, "l2": 0.7838, "l1": 6.1956, "l0": 63.2, "pairs": 16},
}


@pytest.fixture(scope="module")
def problem():
    model, _, (x, y), _ = toy_problem()
    pred = np.argmax(model.predict(x, verbose=0), -1)
    return model, x[pred == y][:16], y[pred == y][:16]


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_engine_matches_numpy_engine(problem, case):
    model, x, y = problem
    attack = A.get_attack(case.split("-")[0], **CASES[case])
    if attack.targeted:  # 3 targets per image
        xs, ys = np.repeat(x, 3, 0), np.repeat(y, 3)
        ts = (ys + np.tile([1, 4, 7], len(x))) % 10
        adv = attack.generate(model, xs, ys, target=ts)
        ok = np.argmax(model.predict(adv, verbose=0), -1) == ts
    else:
        xs = x
        adv = attack.generate(model, xs, y)
        ok = np.argmax(model.predict(adv, verbose=0), -1) != y
    ref = REFERENCE[case]
    assert len(xs) == ref["pairs"]
    p = ref["success"]
    noise = max(2 * np.sqrt(p * (1 - p) / len(xs)), 1 / len(xs))
    assert abs(ok.mean() - p) <= noise + 1e-9, (case, ok.mean(), p)
    d = (adv - xs).reshape(len(xs), -1)[ok]
    assert np.linalg.norm(d, axis=1).mean() == pytest.approx(ref["l2"], rel=0.02)
    assert np.abs(d).sum(1).mean() == pytest.approx(ref["l1"], rel=0.02)
    assert (np.abs(d) > 1e-6).sum(1).mean() == pytest.approx(ref["l0"], rel=0.02)
