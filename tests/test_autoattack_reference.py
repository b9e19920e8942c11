"""Our AutoAttack against torchattacks' components on released models (slow; torch backend).

``torchattacks.AutoAttack`` runs APGD / APGD-T / FAB at torchattacks' default
of 10 iterations; the reference AutoAttack uses 100. The referee here is
torchattacks' APGD-CE, APGD-T (9 targets), FAB-T (9 targets) and Square
(5000 queries, p_init 0.8) at 100 iterations, each on the images the earlier
ones left (what its ``MultiAttack`` does, run by hand for a per-component
log), on the same images (the first 200 MNIST test images, linf 0.3). Robust
accuracy of ours must lie within the 95 % Wilson interval of the referee's and
vice versa, on an undefended model, a gradient-masking one (GI2: CE gradients
vanish in float32, so APGD-CE fails and APGD-T must carry the attack) and an
adversarially trained one. Run with ``-s`` to see both per-component logs.

Run with ``KERAS_BACKEND=torch HF_HUB_OFFLINE=1 pytest -m slow tests/test_autoattack_reference.py``
(MNIST from the data cache, see README).
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow

if keras.backend.backend() != "torch":
    pytest.skip("the torchattacks referee runs on the torch backend only", allow_module_level=True)
torchattacks = pytest.importorskip("torchattacks")

import torch

import hardened
from hardened.attacks import get_attack
from hardened.reporting.cards import wilson_interval

N, EPS = 200, 0.3


class _NCHW(torch.nn.Module):
    """torchattacks' Square and FAB read (C, H, W) from dims 1-3; Keras models take NHWC."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images.permute(0, 2, 3, 1), training=False)


def _referee(net):
    """torchattacks' components at the reference settings, in AutoAttack's order."""
    common = {"eps": EPS, "norm": "Linf", "seed": 0}
    return [
        ("APGD-CE", torchattacks.APGD(net, loss="ce", steps=100, n_restarts=1, **common)),
        ("APGD-T", torchattacks.APGDT(net, steps=100, n_restarts=1, n_classes=10, **common)),
        ("FAB-T", torchattacks.FAB(net, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, **common)),
        ("Square", torchattacks.Square(net, n_queries=5000, n_restarts=1, p_init=0.8, **common)),
    ]


def _run_referee(model, x, y):
    """Each component on the images the earlier ones left (what MultiAttack does), with a log like ours."""
    net = _NCHW(model).eval()
    robust = _robust(model, x, y)
    out, log = x.copy(), []
    for name, attack in _referee(net):
        todo = np.flatnonzero(robust)
        if len(todo):
            adv = attack(torch.tensor(np.transpose(x[todo], (0, 3, 1, 2))), torch.tensor(y[todo]))
            adv = np.transpose(adv.detach().cpu().numpy(), (0, 2, 3, 1))
            hit = ~_robust(model, adv, y[todo])
            out[todo[hit]] = adv[hit]
            robust[todo[hit]] = False
        log.append({"attack": name, "n_attacked": len(todo), "robust_accuracy": float(robust.mean())})
    return out, log


@pytest.fixture(scope="module")
def mnist():
    from hardened.data import load_dataset

    _, (x, y) = load_dataset("mnist")
    return x[:N].astype("float32"), y[:N].astype("int64")


def _robust(model, x_adv, y):
    return np.argmax(keras.ops.convert_to_numpy(model(x_adv, training=False)), axis=1) == y


@pytest.mark.parametrize("name", ["cnn7-mnist", "cnn7-gi2-mnist", "cwcnn-advtrain-mnist"])
def test_autoattack_agrees_with_the_torchattacks_referee(name, mnist):
    x, y = mnist
    model = hardened.from_pretrained(name)
    attack = get_attack("autoattack", eps=EPS, norm="linf")
    ours = attack.generate(model, x, y)
    theirs, their_log = _run_referee(model, x, y)
    for mine, ref in zip(attack.last_log, their_log):
        print(f"{name} {mine['attack']:>9}: attacked {mine['n_attacked']:3d} / {ref['n_attacked']:3d}, robust after "
              f"{100 * mine['robust_accuracy']:5.1f} % / {100 * ref['robust_accuracy']:5.1f} % (ours / torchattacks)")
    k_ours, k_theirs = int(_robust(model, ours, y).sum()), int(_robust(model, theirs, y).sum())
    lo_o, hi_o = wilson_interval(k_ours, N)
    lo_t, hi_t = wilson_interval(k_theirs, N)
    print(f"{name}: robust ours {k_ours}/{N}, torchattacks {k_theirs}/{N}")
    tol = 1e-9  # Wilson bounds at k = 0 or k = n carry float round-off
    assert lo_t - tol <= k_ours / N <= hi_t + tol and lo_o - tol <= k_theirs / N <= hi_o + tol
