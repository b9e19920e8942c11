"""Cross-check against torchattacks (PyTorch backend only) on the same small trained model.

Install with ``pip install --no-deps torchattacks`` (it pins an old requests
and pulls a CUDA torchvision that it never imports; 3.5.1 imports fine
without torchvision). The Keras torch-backend model is wrapped as a
``torch.nn.Module``; images stay NHWC (torchattacks' FGSM, PGD, CW and
DeepFool are layout-agnostic). Success rates must agree within 3 points.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "torch":
    pytest.skip("torchattacks cross-check runs on the torch backend only", allow_module_level=True)
torchattacks = pytest.importorskip("torchattacks")

import torch  # noqa: E402

import hardened.attacks as A  # noqa: E402
from hardened.attacks._toy import toy_problem  # noqa: E402

TOLERANCE = 0.03


class KerasModule(torch.nn.Module):
    """A Keras torch-backend model as a plain ``nn.Module`` returning logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, training=False)


@pytest.fixture(scope="module")
def problem():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine: threads only spin
    model, _, (x, y), _ = toy_problem(n_train=500, n_test=400)
    keep = _predict(model, x) == y  # attack correctly classified images only
    yield model, KerasModule(model).eval(), x[keep], y[keep]
    torch.set_num_threads(before)


def _predict(model, x):
    return np.argmax(keras.ops.convert_to_numpy(model(np.asarray(x, dtype="float32"), training=False)), axis=1)


def _asr(model, x_adv, y):
    return float(np.mean(_predict(model, x_adv) != y))


def _theirs(attack, x, y):
    return attack(torch.tensor(x), torch.tensor(y)).detach().cpu().numpy()


def test_fgsm_matches_torchattacks(problem):
    model, net, x, y = problem
    for eps in (0.1, 0.12):
        ours = A.get_attack("fgsm", eps=eps).generate(model, x, y)
        theirs = _theirs(torchattacks.FGSM(net, eps=eps), x, y)
        assert abs(_asr(model, ours, y) - _asr(model, theirs, y)) <= TOLERANCE
        np.testing.assert_allclose(ours, theirs, atol=1e-6)  # deterministic: same examples


def test_pgd_matches_torchattacks(problem):
    model, net, x, y = problem
    eps, alpha, steps = 0.1, 0.025, 10
    # Without random start both are deterministic and must coincide.
    ours = A.get_attack("pgd", eps=eps, step_size=alpha, steps=steps, random_start=False,
                        keep_best=False).generate(model, x, y)
    theirs = _theirs(torchattacks.PGD(net, eps=eps, alpha=alpha, steps=steps, random_start=False), x, y)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # With random starts, compare mean success over a few seeds.
    ours_rates, their_rates = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        theirs = _theirs(torchattacks.PGD(net, eps=eps, alpha=alpha, steps=steps), x, y)
        ours = A.get_attack("pgd", eps=eps, step_size=alpha, steps=steps, keep_best=False,
                            seed=seed).generate(model, x, y)
        their_rates.append(_asr(model, theirs, y))
        ours_rates.append(_asr(model, ours, y))
    assert abs(np.mean(ours_rates) - np.mean(their_rates)) <= TOLERANCE, (ours_rates, their_rates)


@pytest.mark.parametrize("c", [0.3, 1.0])
def test_cw_matches_torchattacks(problem, c):
    model, net, x, y = problem
    x, y = x[:200], y[:200]
    # torchattacks' CW: fixed c (no binary search), Adam in tanh space, early stop.
    theirs = _theirs(torchattacks.CW(net, c=c, kappa=0, steps=50, lr=0.01), x, y)
    ours = A.get_attack("cw_l2", initial_const=c, binary_search_steps=1, steps=50, lr=0.01,
                        confidence=0.0).generate(model, x, y)
    assert abs(_asr(model, ours, y) - _asr(model, theirs, y)) <= TOLERANCE
    l2 = lambda a: np.median(np.sqrt(np.sum((a - x).reshape(len(x), -1) ** 2, axis=1)))  # noqa: E731
    assert l2(ours) == pytest.approx(l2(theirs), rel=0.1)


def test_deepfool_matches_torchattacks(problem):
    model, net, x, y = problem
    x, y = x[:100], y[:100]
    theirs = _theirs(torchattacks.DeepFool(net, steps=50, overshoot=0.02), x, y)
    ours = A.get_attack("deepfool", steps=50, overshoot=0.02).generate(model, x, y)

    def reached(x_adv):
        # torchattacks stops as soon as a batch-of-one forward pass flips the label, so some of
        # its examples sit within float32 rounding (~1e-6) of the boundary and flip back in a
        # batched pass. Count "on the boundary" as reached for the comparison.
        z = keras.ops.convert_to_numpy(model(x_adv, training=False))
        true = z[np.arange(len(y)), y]
        z[np.arange(len(y)), y] = -np.inf
        return true - z.max(axis=1) <= 1e-5

    assert abs(np.mean(reached(ours)) - np.mean(reached(theirs))) <= TOLERANCE
    assert _asr(model, ours, y) >= _asr(model, theirs, y)  # overshoot on the total: never weaker
    l2 = lambda a: np.median(np.sqrt(np.sum((a - x).reshape(len(x), -1) ** 2, axis=1)))  # noqa: E731
    assert l2(ours) == pytest.approx(l2(theirs), rel=0.1)
