"""Attacks on a tiny trained classifier, on whichever backend KERAS_BACKEND selects.

The model is `hardened.attacks._toy`'s MLP (64-32-32-10), trained in numpy
(fast, identical on every backend) on synthetic 8x8x1 images: ten random
prototypes plus noise. It is 100 % accurate on the attacked images, so
success rates are attack success rates.
"""

import keras
import numpy as np
import pytest
from keras import ops

import hardened.attacks as A
from hardened.attacks import _grad, losses
from hardened.attacks._toy import mlp as _mlp
from hardened.attacks._toy import toy_problem
from hardened.layers import DefensiveDropout, GaussianNoiseInjection, apply_gi, randomized_layers

BACKEND = keras.backend.backend()
N = 48  # images attacked per check


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # On a shared 2-core machine torch's intra-op threads spin against each
    # other; one thread is ~30x faster for these tiny models.
    if BACKEND != "torch":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    model, _, (x, y), weights = toy_problem(n_train=500, n_test=400)
    xt, yt = x[:N], y[:N]
    assert np.mean(_predict(model, xt) == yt) == 1.0
    return {"model": model, "weights": weights, "x": xt, "y": yt, "target": (yt + 1) % 10,
            "x_holdout": x[100:]}


def _predict(model, x):
    return np.argmax(ops.convert_to_numpy(model(x, training=False)), axis=-1)


def _asr(model, x_adv, y, target=None):
    pred = _predict(model, x_adv)
    return float(np.mean(pred == target) if target is not None else np.mean(pred != y))


def _check_output(x_adv, x):
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def _l2(d):
    return np.sqrt(np.sum(d.reshape(len(d), -1).astype(np.float64) ** 2, axis=1))


# --------------------------------------------------------------------------- API
def test_registry_and_params():
    expected = {"fgsm", "bim", "mim", "pgd", "jsma", "cw_l2", "ead", "deepfool", "ddn", "square", "zoo",
                "substitute"}
    assert expected <= set(A.list_attacks()) and set(A.ATTACKS) == set(A.list_attacks())
    for name, cls in A.ATTACKS.items():
        attack = A.get_attack(name)
        assert isinstance(attack, A.Attack) and attack.name == name
        assert set(cls.defaults) <= set(attack.params)
        assert attack.norm in ("linf", "l2", "l1", "l0", None)
        assert isinstance(attack.targeted, bool) and isinstance(attack.gradient_free, bool)
    pgd = A.get_attack("PGD", eps=0.1, steps=8)
    assert pgd.params["step_size"] == pytest.approx(2.5 * 0.1 / 8)  # resolved default, reported
    assert pgd.params["loss"] == "ce" and pgd.params["restarts"] == 1
    assert A.get_attack("pgd", norm="L2").norm == "l2"
    assert A.get_attack("square").gradient_free and not A.get_attack("pgd").gradient_free
    assert A.get_attack("jsma").targeted and A.get_attack("jsma", variant="z").params["variant"] == "Z"


@pytest.mark.parametrize("name, params, match", [
    ("pgd", {"eps": -0.1}, "eps must be >= 0"),
    ("fgsm", {"loss": "xent"}, "Unknown loss"),
    ("pgd", {"norm": "l1"}, "norm must be one of"),
    ("pgd", {"stesp": 3}, "did you mean 'steps'"),
    ("cw_l2", {"steps": 0}, "steps must be >= 1"),
    ("jsma", {"targeted": False}, "targeted attack"),
    ("jsma", {"theta": 0.0}, "theta must be non-zero"),
    ("square", {"loss": "dlr"}, "loss must be one of"),
    ("deepfool", {"overshoot": float("nan")}, "finite number"),
    ("bim", {"targeted": "yes"}, "True or False"),
])
def test_bad_params_raise(name, params, match):
    with pytest.raises(ValueError, match=match):
        A.get_attack(name, **params)


def test_unknown_attack_suggests_names():
    with pytest.raises(ValueError, match="did you mean 'pgd'"):
        A.get_attack("pdg")
    with pytest.raises(ValueError, match="Known attacks"):
        A.get_attack("no_such_attack")


def test_bad_inputs_raise(setup):
    model, x, y = setup["model"], setup["x"][:4], setup["y"][:4]
    fgsm = A.get_attack("fgsm", eps=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm.generate(model, x * 255, y)
    with pytest.raises(TypeError, match="integer dtype"):
        fgsm.generate(model, (x * 255).astype("uint8"), y)
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\]"):
        fgsm.generate(model, x, y + 10)
    with pytest.raises(ValueError, match="one-hot"):
        fgsm.generate(model, x, np.eye(10)[y])
    with pytest.raises(ValueError, match="shape"):
        fgsm.generate(model, x, y[:3])
    with pytest.raises(ValueError, match="pass target labels"):
        A.get_attack("pgd", targeted=True).generate(model, x, y)
    with pytest.raises(ValueError, match="untargeted"):
        fgsm.generate(model, x, y, target=y)
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\]"):
        A.get_attack("jsma").generate(model, x, y, target=np.full(4, 12))
    with pytest.raises(ValueError, match="batch_size"):
        fgsm.generate(model, x, y, batch_size=0)
    with pytest.raises(ValueError, match="model expects"):
        fgsm.generate(model, np.zeros((2, 9, 9, 1), "float32"), y[:2])


# --------------------------------------------------------------------------- losses
def test_losses_values_and_ce_is_faithful():
    z = np.array([[2.0, 1.0, -1.0, 0.5], [0.0, 3.0, 1.0, 2.0]], "float32")
    y = np.array([0, 3])
    t = np.array([1, 0])
    np_ = ops.convert_to_numpy
    ref_ce = -np.log(np.exp(z[[0, 1], y]) / np.exp(z).sum(1))
    np.testing.assert_allclose(np_(losses.ce(z, y)), ref_ce, rtol=1e-5)
    np.testing.assert_allclose(np_(losses.ce(z, np.eye(4)[y])), ref_ce, rtol=1e-5)  # one-hot labels too
    np.testing.assert_allclose(np_(losses.margin(z, y)), [1.0 - 2.0, 3.0 - 2.0])
    np.testing.assert_allclose(np_(losses.margin_targeted(z, t)), [1.0 - 2.0, 0.0 - 3.0])
    dlr = np_(losses.dlr(z, y))
    np.testing.assert_allclose(dlr, [(1.0 - 2.0) / (2.0 - 0.5), (3.0 - 2.0) / (3.0 - 1.0)], rtol=1e-5)
    np.testing.assert_allclose(np_(losses.dlr(7.0 * z + 3.0, y)), dlr, rtol=1e-5)  # scale/shift invariant
    np.testing.assert_allclose(np_(losses.dlr_targeted(z, y, t)),
                               [(1.0 - 2.0) / (2.0 + 0.25), (0.0 - 2.0) / (3.0 - 0.5)], rtol=1e-5)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    ref_sig = -np.log(sig(z[0, 0])) - np.log(1 - sig(z[0, 1:])).sum()
    np.testing.assert_allclose(np_(losses.ce_sigmoid(z, y))[0], ref_sig, rtol=1e-5)
    # Saturated softmax: CE's float32 gradient is exactly zero (as in TF/torch), margin's is not.
    x = np.array([[1.0]], "float32")
    inp = keras.Input((1,))
    lin = keras.Model(inp, keras.layers.Dense(3, use_bias=False, kernel_initializer="zeros", name="d")(inp))
    lin.set_weights([np.array([[200.0, 0.0, -200.0]], "float32")])
    g_ce = _grad.input_grad(lin, x, losses.ce, np.array([0]))
    g_margin = _grad.input_grad(lin, x, losses.margin, np.array([0]))
    assert np.all(g_ce == 0.0) and np.all(g_margin != 0.0)
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.dlr(np.zeros((1, 2), "float32"), np.array([0]))


# --------------------------------------------------------------------------- norm-bounded
NORM_BOUNDED = [
    ("fgsm", {"eps": 0.25}, 0.85),
    ("fgsm", {"eps": 1.5, "norm": "l2"}, 0.6),
    ("bim", {"eps": 0.2, "steps": 10}, 0.9),
    ("mim", {"eps": 0.2, "steps": 10}, 0.9),
    ("pgd", {"eps": 0.2, "steps": 10}, 0.95),
    ("pgd", {"eps": 1.5, "norm": "l2", "steps": 10}, 0.9),
    ("pgd", {"eps": 0.2, "steps": 10, "loss": "margin", "restarts": 2}, 0.95),
    ("pgd", {"eps": 0.2, "steps": 10, "loss": "dlr"}, 0.9),
    ("square", {"eps": 0.25, "queries": 300}, 0.8),
]


@pytest.mark.parametrize("name, params, min_asr", NORM_BOUNDED,
                         ids=[f"{n}-{p.get('norm', 'linf')}-{p.get('loss', 'ce')}" for n, p, _ in NORM_BOUNDED])
def test_norm_bounded_attack(setup, name, params, min_asr):
    model, x, y = setup["model"], setup["x"], setup["y"]
    attack = A.get_attack(name, **params)
    x_adv = attack.generate(model, x, y)
    _check_output(x_adv, x)
    eps = params["eps"]
    if attack.norm == "linf":
        assert np.abs(x_adv - x).max() <= eps + 1e-6
    else:
        assert _l2(x_adv - x).max() <= eps + 1e-4
    assert _asr(model, x_adv, y) >= min_asr


def test_success_rises_with_eps_and_iterative_beats_single_step(setup):
    model, x, y = setup["model"], setup["x"], setup["y"]
    rates = [_asr(model, A.get_attack("pgd", eps=e, steps=10).generate(model, x, y), y) for e in (0.02, 0.1, 0.3)]
    assert rates[0] <= rates[1] <= rates[2] and rates[0] < 0.2 and rates[2] == 1.0
    fgsm = _asr(model, A.get_attack("fgsm", eps=0.12).generate(model, x, y), y)
    pgd = _asr(model, A.get_attack("pgd", eps=0.12, steps=10).generate(model, x, y), y)
    assert pgd >= fgsm


def test_batches_and_progress_bar_do_not_change_results(setup, capsys):
    model, x, y = setup["model"], setup["x"][:9], setup["y"][:9]
    attack = A.get_attack("pgd", eps=0.1, steps=3, random_start=False)
    whole = attack.generate(model, x, y)
    pieces = attack.generate(model, x, y, batch_size=3, progress=True)
    np.testing.assert_allclose(whole, pieces, atol=1e-6)
    assert "pgd" in capsys.readouterr().err  # the tqdm bar


# --------------------------------------------------------------------------- minimal-norm
def test_minimal_norm_attacks(setup):
    model, x, y = setup["model"], setup["x"][:24], setup["y"][:24]
    cw = A.get_attack("cw_l2", binary_search_steps=4, steps=60, initial_const=0.1)
    x_cw = cw.generate(model, x, y)
    _check_output(x_cw, x)
    assert _asr(model, x_cw, y) >= 0.9
    l2_cw = _l2(x_cw - x)
    # Margin at least as large as the PGD-l2 success radius: C&W finds smaller perturbations.
    assert np.median(l2_cw) < 1.5

    ead = A.get_attack("ead", binary_search_steps=4, steps=60, initial_const=0.1)
    x_ead = ead.generate(model, x, y)
    _check_output(x_ead, x)
    assert _asr(model, x_ead, y) >= 0.9
    d = (x_ead - x).reshape(len(x), -1)
    assert np.mean(np.sum(d != 0, axis=1)) < np.mean(np.sum((x_cw - x).reshape(len(x), -1) != 0, axis=1))  # sparser

    ddn = A.get_attack("ddn", steps=40)
    x_ddn = ddn.generate(model, x, y)
    _check_output(x_ddn, x)
    assert _asr(model, x_ddn, y) >= 0.9 and np.median(_l2(x_ddn - x)) < 1.5
    bounded = A.get_attack("ddn", steps=40, max_norm=0.3).generate(model, x, y)
    assert _l2(bounded - x).max() <= 0.3 + 1e-4


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_and_rho(setup, norm):
    model, x, y = setup["model"], setup["x"][:24], setup["y"][:24]
    attack = A.get_attack("deepfool", norm=norm)
    x_adv = attack.generate(model, x, y)
    _check_output(x_adv, x)
    assert _asr(model, x_adv, y) >= 0.95
    assert attack.last_success.mean() >= 0.95
    np.testing.assert_allclose(attack.last_norms, A.norms(x_adv - x, norm), rtol=1e-5)
    rho, norms_, counted = A.deepfool_rho(model, x, y, norm=norm, return_norms=True)
    assert counted.all() and 0 < rho < 1
    np.testing.assert_allclose(norms_, attack.last_norms, rtol=1e-4)


# --------------------------------------------------------------------------- targeted
TARGETED = [
    ("pgd", {"eps": 0.3, "steps": 20}),
    ("cw_l2", {"binary_search_steps": 3, "steps": 60, "initial_const": 0.5}),
    ("jsma", {"variant": "F", "gamma": 0.5}),
    ("jsma", {"variant": "Z", "gamma": 0.5}),
    ("zoo", {"steps": 60, "coords": 32}),
]


@pytest.mark.parametrize("name, params", TARGETED, ids=[f"{n}-{p.get('variant', '')}" for n, p in TARGETED])
def test_targeted_attacks_reach_targets(setup, name, params):
    model, x, y, t = setup["model"], setup["x"][:16], setup["y"][:16], setup["target"][:16]
    attack = A.get_attack(name, targeted=True, **params)
    x_adv = attack.generate(model, x, y, target=t)
    _check_output(x_adv, x)
    assert _asr(model, x_adv, y, target=t) >= 0.9
    if name == "jsma":  # L0 attack: at most gamma of the features, two per iteration
        changed = np.sum((x_adv != x).reshape(len(x), -1), axis=1)
        assert changed.max() <= 2 * int(64 * 0.5 / 2)
        assert np.median(changed) < 20


# --------------------------------------------------------------------------- gradient-free
@pytest.fixture
def no_target_gradients(monkeypatch, setup):
    """Make every input-gradient call on the target model fail."""
    target = setup["model"]
    real = _grad.make_loss_grad

    def guarded(model, *args, **kwargs):
        if model is target:
            raise AssertionError("gradient of the target model requested")
        return real(model, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("gradient requested")

    real_step = _grad.make_step

    def guarded_step(model, *args, **kwargs):
        if model is target:
            raise AssertionError("compiled attack step (gradients) requested on the target model")
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(_grad, "make_loss_grad", guarded)
    monkeypatch.setattr(_grad, "make_step", guarded_step)
    monkeypatch.setattr(_grad, "loss_and_input_grad", refuse)
    monkeypatch.setattr(_grad, "input_grad", refuse)
    return target


def test_square_and_zoo_without_gradients(setup, no_target_gradients):
    model, x, y = setup["model"], setup["x"][:24], setup["y"][:24]
    square = A.get_attack("square", eps=0.25, queries=300, seed=1)
    x_sq = square.generate(model, x, y)
    _check_output(x_sq, x)
    assert np.abs(x_sq - x).max() <= 0.25 + 1e-6
    assert _asr(model, x_sq, y) >= 0.8
    assert square.last_queries.max() <= 300 and square.last_queries.min() >= 1
    zoo = A.get_attack("zoo", steps=40, coords=32)
    x_zoo = zoo.generate(model, x[:12], y[:12])
    _check_output(x_zoo, x[:12])
    assert _asr(model, x_zoo, y[:12]) >= 0.9
    assert zoo.last_queries.min() > 0


def test_square_forward_shrinks_with_the_images_left():
    """Square's queries pad to the next power of two, not the batch: same logits, smaller calls."""
    from hardened.attacks.square import _padded

    calls = []

    def fn(xs):
        calls.append(len(xs))
        return xs * 2.0

    xs = np.arange(5, dtype=np.float32).reshape(5, 1)
    np.testing.assert_array_equal(_padded(fn, xs, 128), xs * 2.0)
    for m in (1, 2, 3, 64, 65, 128):
        _padded(fn, np.ones((m, 1), np.float32), 128)
    _padded(fn, np.ones((100, 1), np.float32), 100)
    assert calls == [8, 1, 2, 4, 64, 128, 128, 100]


def test_substitute_transfer_without_target_gradients(setup, no_target_gradients):
    model, x, y = setup["model"], setup["x"], setup["y"]
    attack = A.get_attack("substitute", n_seed=150, rounds=3, epochs=5, hidden=64, lmbda=0.2, eps=0.3)
    attack.fit(model, setup["x_holdout"][:150])
    assert attack.queries_ == 150 * 4  # 150 seeds, doubled twice
    assert np.mean(_predict(attack.substitute_, x) == _predict(model, x)) >= 0.8
    x_adv = attack.generate(model, x, y)
    _check_output(x_adv, x)
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6
    rng = np.random.default_rng(0)
    noise = np.clip(x + 0.3 * rng.choice([-1.0, 1.0], size=x.shape), 0, 1).astype("float32")
    assert _asr(model, x_adv, y) >= max(0.4, 3 * _asr(model, noise, y))


# --------------------------------------------------------------------------- gradient masking
def test_gi2_masks_ce_gradients_but_not_margin(setup):
    """GI2 (w -> 4w on the last three layers) saturates softmax: CE-PGD fails, margin-PGD does not."""
    model, x, y = setup["model"], setup["x"], setup["y"]
    gi = apply_gi(model, "gi2", 3.0)
    assert np.all(_predict(gi, x) == y)
    grad = _grad.make_loss_grad(gi, losses.ce)(x, y)[1]
    zero = np.all(grad.reshape(len(x), -1) == 0, axis=1)
    assert zero.mean() >= 0.8  # exactly zero in float32
    pgd_ce = A.get_attack("pgd", eps=0.2, steps=10)
    pgd_margin = A.get_attack("pgd", eps=0.2, steps=10, loss="margin")
    assert _asr(model, pgd_ce.generate(model, x, y), y) >= 0.95  # undefended: CE works
    assert _asr(gi, pgd_ce.generate(gi, x, y), y) <= 0.15
    assert _asr(gi, pgd_margin.generate(gi, x, y), y) >= 0.95
    assert _asr(gi, A.get_attack("pgd", eps=0.2, steps=10, loss="dlr").generate(gi, x, y), y) >= 0.9


# --------------------------------------------------------------------------- adaptive wrappers
def _noisy_model(setup, layer):
    model = _mlp(noise=layer)
    model.set_weights(setup["weights"])
    return model


def test_compiled_forward_draws_fresh_randomness(setup):
    noisy = _noisy_model(setup, GaussianNoiseInjection(1.0, seed=3, name="noise"))
    forward = _grad.make_forward(noisy)
    x = setup["x"][:4]
    assert not np.allclose(forward(x), forward(x))
    _, g1, _ = _grad.make_loss_grad(noisy, losses.margin)(x, np.eye(10, dtype="float32")[setup["y"][:4]])
    _, g2, _ = _grad.make_loss_grad(noisy, losses.margin)(x, np.eye(10, dtype="float32")[setup["y"][:4]])
    assert not np.allclose(g1, g2)


def test_eot_averages_gradients_on_randomized_model(setup, monkeypatch):
    noisy = _noisy_model(setup, DefensiveDropout(0.5, seed=3, name="dropout"))
    x, y = setup["x"][:24], setup["y"][:24]
    samples = []
    real_step = _grad.make_step

    def recording_step(model, key, body, grad_samples=1, training=False):
        samples.append(grad_samples)
        return real_step(model, key, body, grad_samples=grad_samples, training=training)

    monkeypatch.setattr(_grad, "make_step", recording_step)
    _grad.clear_cache(noisy)
    pgd = A.get_attack("pgd", eps=0.2, steps=5, loss="margin")
    attack = A.eot(pgd, n=4)
    assert attack.name == "eot(pgd)" and attack.params["eot_samples"] == 4 and attack.norm == "linf"
    x_adv = attack.generate(noisy, x, y)
    assert samples and set(samples) == {4}  # every compiled step averages 4 passes
    _check_output(x_adv, x)
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6
    votes = np.mean([_asr(noisy, x_adv, y) for _ in range(5)])  # evaluated on the random model
    assert votes >= 0.8
    assert pgd._grad_samples == 1  # the wrapped attack itself is unchanged


def test_fixed_randomness_crafts_on_fixed_path_and_restores(setup, monkeypatch):
    noisy = _noisy_model(setup, GaussianNoiseInjection(0.5, seed=3, name="noise"))
    x, y = setup["x"][:16], setup["y"][:16]
    layer = randomized_layers(noisy)[0]
    seen = []
    real, real_step = _grad.make_loss_grad, _grad.make_step

    def spy(model, *args, **kwargs):
        seen.append(layer.randomness)
        return real(model, *args, **kwargs)

    def spy_step(model, *args, **kwargs):
        seen.append(layer.randomness)
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(_grad, "make_loss_grad", spy)
    monkeypatch.setattr(_grad, "make_step", spy_step)
    pgd = A.get_attack("pgd", eps=0.2, steps=5, loss="margin", seed=7)
    attack = A.fixed_randomness(pgd)
    assert attack.name == "fixed_randomness(pgd)"
    x_adv = attack.generate(noisy, x, y)
    assert seen and not any(seen) and layer.randomness is True
    # With the noise switched off the model is the plain MLP: same examples as attacking it.
    np.testing.assert_allclose(x_adv, pgd.generate(setup["model"], x, y), atol=1e-5)
    layer.randomness = True
    with pytest.raises(ValueError):
        attack.generate(noisy, x * 2, y)  # fails inside; state still restored
    assert layer.randomness is True


class _Quantize(keras.layers.Layer):
    """A non-differentiable input transform (4 grey levels): zero gradient everywhere."""

    def call(self, x):
        return ops.round(x * 3.0) / 3.0


def test_bpda_straight_through_breaks_quantization(setup):
    model = _mlp(pre=_Quantize(name="quant"))
    model.set_weights(setup["weights"])
    x, y = setup["x"][:24], setup["y"][:24]
    straight = A.bpda_model(model, {"quant": None})
    np.testing.assert_allclose(ops.convert_to_numpy(straight(x)), ops.convert_to_numpy(model(x)), atol=1e-5)
    grad = _grad.make_loss_grad(model, losses.margin)(x, y)[1]
    assert np.all(grad == 0)  # masked: round has no gradient
    assert np.any(_grad.make_loss_grad(straight, losses.margin)(x, y)[1] != 0)
    pgd = A.get_attack("pgd", eps=0.3, steps=10, loss="margin", random_start=False)
    clean_asr = _asr(model, x, y)
    assert _asr(model, pgd.generate(model, x, y), y) <= clean_asr + 0.05
    attack = A.bpda(pgd, replace={"quant": "identity"})
    assert attack.name == "bpda(pgd)" and attack.params["bpda_replace"] == ["quant"]
    x_adv = attack.generate(model, x, y)
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6
    assert _asr(model, x_adv, y) >= 0.8
    with pytest.raises(ValueError, match="did you mean"):
        A.bpda(pgd, replace={"qaunt": None}).generate(model, x, y)


def test_bpda_softmax_to_sigmoid_switches_the_loss(setup):
    model, x, y = setup["model"], setup["x"][:16], setup["y"][:16]
    attack = A.bpda(A.get_attack("pgd", eps=0.25, steps=10), softmax_to_sigmoid=True)
    assert attack.params["loss"] == "ce_sigmoid" and attack.params["softmax_to_sigmoid"]
    # One-vs-all sigmoids are a weaker surrogate than softmax CE on an undefended model.
    assert _asr(model, attack.generate(model, x, y), y) >= 0.7
    jsma = A.bpda(A.get_attack("jsma", variant="F", gamma=0.5), softmax_to_sigmoid=True)
    t = setup["target"][:16]
    assert _asr(model, jsma.generate(model, x, y, target=t), y, target=t) >= 0.8
    with pytest.raises(ValueError, match="no loss parameter"):
        A.bpda(A.get_attack("cw_l2"), softmax_to_sigmoid=True)
    with pytest.raises(ValueError, match="gradient-free"):
        A.bpda(A.get_attack("square"), softmax_to_sigmoid=True)
    with pytest.raises(ValueError, match="replace"):
        A.bpda(A.get_attack("pgd"))


def test_wrappers_compose(setup):
    noisy = _noisy_model(setup, GaussianNoiseInjection(0.3, seed=3, name="noise"))
    x, y = setup["x"][:8], setup["y"][:8]
    attack = A.eot(A.fixed_randomness(A.get_attack("fgsm", eps=0.25, loss="margin")), n=2)
    assert attack.name == "eot(fixed_randomness(fgsm))"
    x_adv = attack.generate(noisy, x, y)
    _check_output(x_adv, x)
    assert np.abs(x_adv - x).max() <= 0.25 + 1e-6
    with pytest.raises(ValueError, match="positive integer"):
        A.eot(A.get_attack("pgd"), n=0)


# --------------------------------------------------------------------------- JSMA's pair search
def _best_pair_brute(a, b, dom):
    """Best score of the exhaustive pair search (``-inf`` when no pair meets the sign conditions)."""
    a2, b2 = a[:, None] + a[None, :], b[:, None] + b[None, :]
    ok = dom[:, None] & dom[None, :] & ~np.eye(len(a), dtype=bool) & (a2 > 0) & (b2 > 0)
    return np.max(np.where(ok, a2 * b2, -np.inf))


@pytest.mark.parametrize("kind", ["independent", "correlated", "anti", "ties"])
def test_jsma_pair_search_matches_exhaustive_search(kind):
    """The Pareto-layer search finds the exhaustive search's best score wherever it certifies (almost always)."""
    from keras import ops

    from hardened.attacks.jsma import _pair_search

    rng = np.random.default_rng(0)
    n, f = 24, 300
    a = rng.normal(size=(n, f)).astype("float32")
    b = {"independent": rng.normal(size=(n, f)), "correlated": a + 0.3 * rng.normal(size=(n, f)),
         "anti": -a + 0.5 * rng.normal(size=(n, f)),
         "ties": np.round(rng.normal(size=(n, f)))}[kind].astype("float32")
    if kind == "ties":
        a = np.round(a)
    dom = rng.random((n, f)) < 0.7
    p1, p2, cert = (ops.convert_to_numpy(v) for v in _pair_search(ops.convert_to_tensor(a), ops.convert_to_tensor(b),
                                                                  ops.convert_to_tensor(dom), 64, f))
    assert cert.mean() >= 0.9
    for i in np.flatnonzero(cert):
        best = _best_pair_brute(a[i], b[i], dom[i])
        assert p1[i] != p2[i] and dom[i, p1[i]] and dom[i, p2[i]]
        if np.isfinite(best):
            got = (a[i, p1[i]] + a[i, p2[i]]) * (b[i, p1[i]] + b[i, p2[i]])
            np.testing.assert_allclose(got, best, rtol=1e-5)
        else:  # no valid pair: the two largest a
            assert sorted([a[i, p1[i]], a[i, p2[i]]]) == sorted(np.sort(a[i][dom[i]])[-2:])


def test_jsma_pair_search_flags_large_fronts():
    """Points on one line a + b = c are all Pareto-optimal: more than k of them cannot be certified."""
    from keras import ops

    from hardened.attacks.jsma import _pair_search

    a = np.linspace(-1, 1, 200, dtype="float32")[None, :]
    _, _, cert = _pair_search(ops.convert_to_tensor(a), ops.convert_to_tensor(1.0 - a),
                              ops.convert_to_tensor(np.ones_like(a, bool)), 64, 200)
    assert not bool(ops.convert_to_numpy(cert)[0])
