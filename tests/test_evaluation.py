"""hardened.evaluation: metric definitions, suites, masking flags, evaluate() and its files."""

import copy
import importlib
import json
import math

import keras
import numpy as np
import pytest

from hardened.attacks import get_attack
from hardened.evaluation import masking, metrics, records, suites, toy
from hardened.evaluation import evaluate as evaluate_fn
from hardened.layers import apply_gi

evaluate_module = importlib.import_module("hardened.evaluation.evaluate")

REQUIRED_KEYS = {"clean_accuracy", "n", "backend", "seed", "suite", "versions", "attacks", "flags",
                 "gradient_masking", "eps_sweep"}
ATTACK_KEYS = {"name", "suite", "params", "success_rate", "n_attacked", "targeted", "mean_l2", "mean_linf",
               "mean_l0", "seconds", "status"}


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def toy_data():
    train = toy.synthetic_images(1000, seed=0)
    test = toy.synthetic_images(120, seed=1)
    return train, test


@pytest.fixture(scope="session")
def toy_model(toy_data):
    (x, y), _ = toy_data
    return toy.train_toy(toy.tiny_classifier(), x, y, epochs=6, batch_size=100, learning_rate=0.01)


def _strict_json(text):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


# ----------------------------------------------------------------- metric definitions (hand-computed)
def test_untargeted_success_counts_only_originally_correct_images():
    y = np.array([0, 1, 2, 3])
    clean = np.array([0, 1, 2, 0])  # image 3 is wrong already: not attacked
    adv = np.array([1, 1, 0, 0])    # image 0 fooled, 1 not, 2 fooled
    rate, n_attacked, n_success = metrics.untargeted_success(y, clean, adv)
    assert (n_attacked, n_success) == (3, 2)
    assert rate == pytest.approx(2 / 3)
    assert math.isnan(metrics.untargeted_success([1], [0], [0])[0])  # nothing correct -> undefined


def test_targeted_protocol_takes_first_correct_images_times_all_wrong_targets():
    y = np.array([2, 0, 1, 4])
    clean = np.array([2, 1, 1, 4])  # image 1 is misclassified and skipped
    index, labels, targets = metrics.targeted_pairs(y, clean, n_images=2, num_classes=5)
    assert index.tolist() == [0] * 4 + [2] * 4
    assert labels.tolist() == [2] * 4 + [1] * 4
    assert targets.tolist() == [0, 1, 3, 4, 0, 2, 3, 4]
    pred = targets.copy()
    pred[[1, 2, 5]] = labels[[1, 2, 5]]  # 3 of the 8 pairs miss their target
    rate, n, hits = metrics.targeted_success(pred, targets)
    assert (n, hits) == (8, 5) and rate == pytest.approx(5 / 8)


def test_distortion_is_averaged_over_successful_examples_and_l0_counts_pixels():
    x = np.zeros((3, 2, 2, 2), np.float32)
    adv = x.copy()
    adv[0, 0, 0, :] = 0.1          # one pixel, both channels: L0 = 1, L2 = sqrt(0.02), Linf = 0.1
    adv[1, :, :, 0] = 0.5          # four pixels, one channel each: L0 = 4, L2 = 1, Linf = 0.5
    adv[2] = 0.9                   # failed example: ignored
    adv[0, 1, 1, 1] = 1e-8         # float round-off is not a changed pixel
    d = metrics.mean_distortion(x, adv, success=[True, True, False])
    assert d["mean_l0"] == pytest.approx((1 + 4) / 2)
    assert d["mean_l2"] == pytest.approx((math.sqrt(0.02) + 1.0) / 2, rel=1e-6)
    assert d["mean_linf"] == pytest.approx((0.1 + 0.5) / 2, rel=1e-6)
    assert metrics.mean_distortion(x, adv, success=[False] * 3) == {"mean_l0": None, "mean_l2": None,
                                                                     "mean_linf": None}


def test_deepfool_rho_is_mean_relative_l2_over_successes():
    x = np.zeros((2, 1, 2, 1), np.float32)
    x[:, 0, 0, 0] = [0.6, 0.8]
    x[:, 0, 1, 0] = [0.8, 0.6]     # ||x||_2 = 1 for both
    adv = x.copy()
    adv[0, 0, 0, 0] += 0.3         # ||r|| = 0.3
    adv[1, 0, 1, 0] += 0.1         # ||r|| = 0.1
    assert metrics.deepfool_robustness(x, adv) == pytest.approx(0.2, rel=1e-6)
    assert metrics.deepfool_robustness(x, adv, success=[True, False]) == pytest.approx(0.3, rel=1e-6)


def test_robustness_terms_of_a_linear_model_match_closed_form():
    keras.utils.set_random_seed(3)
    inp = keras.Input((2, 2, 1))
    out = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).random((5, 2, 2, 1)).astype("float32")
    w = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)
    # dZ_j/dx_i = W_ij for every image: g = mean |W|.
    assert metrics.logit_gradient_magnitude(model, x, batch_size=2) == pytest.approx(np.abs(w).mean(), rel=1e-5)
    z = x.reshape(5, -1) @ w + keras.ops.convert_to_numpy(model.get_layer("logits").bias)
    phi = np.mean(np.mean((z - z.mean(axis=1, keepdims=True)) ** 2, axis=1))
    assert metrics.logit_variance(model, x) == pytest.approx(phi, rel=1e-5)


def test_estimator_table_normalises_across_candidates_and_rejects_accuracy_drops():
    r = metrics.estimator_table(g_values=[1.0, 3.0, 2.0], phi_values=[10.0, 20.0, 30.0],
                                accuracies=[0.99, 0.985, 0.97], base_accuracy=0.99, alpha=0.5, threshold=0.01)
    # normalised g = [0, 1, .5], phi = [0, .5, 1]; the third drops 2 points >= T = 1 point -> R = 1.
    np.testing.assert_allclose(r, [0.0, 0.75, 1.0])
    np.testing.assert_allclose(metrics.normalize_unit([2.0, 2.0]), [0.0, 0.0])
    with pytest.raises(ValueError, match="alpha"):
        metrics.robustness_estimator(0.1, 0.2, alpha=1.5)


def test_des_is_defense_gain_over_accuracy_drop_plus_eta():
    # Seed 004: Δd / (Δt + 0.002) with rates as fractions.
    assert metrics.defense_efficiency_score(0.90, 0.895, 1.0, 0.5) == pytest.approx(0.5 / 0.007)
    assert metrics.defense_efficiency_score(0.90, 0.90, 0.8, 0.6) == pytest.approx(0.2 / 0.002)
    with pytest.raises(ValueError, match="fraction"):
        metrics.defense_efficiency_score(90.0, 89.5, 100.0, 50.0)


def test_clean_accuracy_does_not_depend_on_batch_size(toy_model, toy_data):
    _, (xt, yt) = toy_data
    acc = metrics.clean_accuracy(toy_model, xt, yt, batch_size=7)
    assert acc == metrics.clean_accuracy(toy_model, xt, yt, batch_size=1000)
    assert acc > 0.95  # the toy task is easy; a lower number means the fixture broke


# ----------------------------------------------------------------- suites
def test_suites_never_go_below_the_papers_eps():
    for family, floor, adaptive_floor in (("mnist", 0.3, 0.3), ("cifar10", 0.05, 8 / 255)):
        specs = {s.name: s for s in suites.build_suite("full", dataset=family, randomized=True, backend="jax")}
        for name in ("FGSM", "BIM", "MIM", "Sub-FGSM"):
            assert specs[name].eps >= floor and specs[name].params["eps"] >= floor
        assert specs["BIM"].params["steps"] >= 100
        for name in ("PGD-margin", "PGD-DLR", "EOT-PGD-margin", "Square"):
            assert specs[name].params["eps"] >= adaptive_floor - 1e-12
        assert specs["JSMA-F"].params["variant"] == "F" and specs["JSMA-Z"].params["variant"] == "Z"
        assert all(specs[n].targeted for n in ("JSMA-F", "JSMA-Z", "C&W", "EAD", "Sub-CW", "ZOO-targeted"))
        assert specs["C&W"].max_images == 100  # first 100 correct images x 9 targets
    assert suites.build_suite("hash-gi", dataset="fashion_mnist")[0].params["eps"] == 0.3  # MNIST settings


def test_quick_budget_lowers_only_the_number_of_images():
    full = suites.build_suite("full", dataset="cifar10", randomized=True, backend="jax")
    quick = suites.build_suite("full", dataset="cifar10", randomized=True, backend="jax", quick=True)
    assert [s.name for s in full] == [s.name for s in quick]
    for a, b in zip(full, quick):
        assert (a.params, a.eps, a.wrapper, a.wrapper_params, a.targeted) == \
               (b.params, b.eps, b.wrapper, b.wrapper_params, b.targeted)
        if b.quick_capped:
            assert b.max_images < (a.max_images or 10**9)
        else:
            assert b.max_images == a.max_images
    assert any(s.quick_capped for s in quick)


def test_adaptive_suite_adds_eot_and_fixed_randomness_only_for_randomized_models():
    names = ("EOT-PGD-CE", "EOT-PGD-margin", "FixedRand-PGD-CE", "FixedRand-PGD-margin")
    rand = {s.name: s for s in suites.build_suite("adaptive", dataset="mnist", randomized=True, backend="jax")}
    det = {s.name: s for s in suites.build_suite("adaptive", dataset="mnist", randomized=False, backend="jax")}
    for name in names:
        assert rand[name].skip_reason is None
        assert "deterministic" in det[name].skip_reason
    assert rand["EOT-PGD-margin"].wrapper == "eot" and rand["EOT-PGD-margin"].wrapper_params == {"n": 10}
    assert rand["FixedRand-PGD-CE"].wrapper == "fixed_randomness"
    assert {"PGD-margin", "PGD-DLR", "BPDA", "Square", "AutoAttack"} <= set(rand)
    assert rand["AutoAttack"].params["version"] == "rand" and det["AutoAttack"].params["version"] == "standard"


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_autoattack_runs_on_every_backend(backend):
    spec = next(s for s in suites.build_suite("adaptive", dataset="mnist", backend=backend)
                if s.name == "AutoAttack")
    assert spec.skip_reason is None and spec.attack == "autoattack"
    attack = get_attack(spec.attack, **spec.params)
    assert attack.params["steps"] == 100 and attack.params["queries"] == 5000 and attack.params["n_targets"] == 9


def test_suite_errors():
    with pytest.raises(ValueError, match="Unknown suite"):
        suites.build_suite("strong")
    with pytest.raises(ValueError, match="Unknown attack name"):
        suites.select(suites.build_suite("hash-gi", dataset="mnist"), ["FGSM", "PGD-XYZ"])
    with pytest.raises(ValueError, match="No attack settings"):
        suites.family_for("imagenette")


# ----------------------------------------------------------------- masking flags
def _flags(result):
    return {f["name"]: f for f in result["flags"]}


def test_gi2_view_is_flagged_for_gradient_masking_and_the_plain_model_is_not(toy_model, toy_data):
    _, (xt, yt) = toy_data
    eps = (0.05, 0.1, 0.2, 0.3, 1.0)
    plain = masking.run_masking_checks(toy_model, xt, yt, eps, black_box_eps=0.3, subset=40)
    gi2 = masking.run_masking_checks(apply_gi(toy_model, "gi2", 3.0), xt, yt, eps, black_box_eps=None, subset=40)
    pf, gf = _flags(plain), _flags(gi2)
    assert not plain["errors"] and not gi2["errors"]

    assert not masking.gradient_masking(plain["flags"]), [f["detail"] for f in plain["flags"] if f["triggered"]]
    for name in ("zero_gradients", "ce_margin_gap", "iterative_weaker_than_single_step", "no_increase_with_eps",
                 "unbounded_not_100", "black_box_stronger_than_white_box"):
        assert pf[name]["evaluated"] and not pf[name]["triggered"], pf[name]["detail"]
    assert pf["zero_gradients"]["value"]["share_images"] < 0.5

    # Softmax saturated by (1 + 3)^3 logit scaling: CE gradients are exactly 0,
    # CE-PGD fails while margin-PGD on the same logits succeeds.
    assert gf["zero_gradients"]["triggered"], gf["zero_gradients"]["detail"]
    assert gf["zero_gradients"]["value"]["share_images"] > 0.9
    assert gf["ce_margin_gap"]["triggered"], gf["ce_margin_gap"]["detail"]
    assert masking.gradient_masking(gi2["flags"])
    assert not gf["randomized"]["triggered"]


def test_randomized_view_gets_the_randomized_flag(toy_model, toy_data):
    _, (xt, _) = toy_data
    gi3 = apply_gi(toy_model, "gi3", 0.2, resample="per_call", seed=5)
    info = masking.forward_randomness(gi3, xt[:8])
    flag = masking.check_randomized(info)
    assert info["differs"] and flag["triggered"] and flag["kind"] == "randomness"
    assert info["randomized_layers"]
    assert not masking.check_randomized(masking.forward_randomness(toy_model, xt[:8]))["triggered"]


def test_eot_and_black_box_flags_from_suite_results():
    rows = [
        {"name": "PGD-margin", "status": "ok", "success_rate": 0.20, "threat": "linf:0.3:untargeted",
         "black_box": False},
        {"name": "EOT-PGD-margin", "status": "ok", "success_rate": 0.70, "threat": "linf:0.3:untargeted",
         "black_box": False},
        {"name": "Square", "status": "ok", "success_rate": 0.55, "threat": "linf:0.3:untargeted",
         "black_box": True},
    ]
    eot = masking.check_eot(rows)
    assert eot["triggered"] and eot["value"][0]["adaptive"] == "EOT-PGD-margin"
    # Square (55 %) is compared with the best white-box attack of its threat model (EOT, 70 %).
    assert not masking.check_black_box(rows)["triggered"]
    bb = masking.check_black_box(rows[:1] + rows[2:])
    assert bb["triggered"] and "Square" in bb["detail"]
    assert not masking.check_eot(rows[:1])["evaluated"]


def _row(name, attack, rate, eps=0.1, transfer_source=None, seed=0):
    return {"name": name, "attack": attack, "status": "ok", "success_rate": rate, "black_box": bool(transfer_source),
            "threat": f"linf:{eps:g}:untargeted", "params": {"eps": eps, "loss": "ce", "seed": seed},
            "transfer_source": transfer_source}


def test_transfer_stronger_than_its_white_box_twin_is_masking():
    # Logits augmentation on CIFAR-10 measured this shape: white-box FGSM 77 %, the same FGSM crafted on the
    # unpruned model 92 %, while BIM (a different attack) still reaches 100 %.
    rows = [_row("FGSM-0.1", "fgsm", 0.772), _row("BIM-0.1", "bim", 1.0),
            _row("Grey-FGSM-0.1", "fgsm", 0.916, transfer_source="cwcnn-cifar10", seed=1)]
    flag = masking.check_transfer(rows)
    assert flag["triggered"] and flag["kind"] == "masking" and flag["threshold"] == masking.TRANSFER_LEAD
    assert "Grey-FGSM-0.1 91.6% (crafted on cwcnn-cifar10) vs FGSM-0.1 77.2%" in flag["detail"]
    assert "+14.4 points" in flag["detail"]
    # The threat-level check compares with the strongest white-box attack (BIM) and so stays quiet.
    assert not masking.check_black_box(rows)["triggered"]
    # Within the threshold, another eps, or no transfer row: not triggered / not evaluated.
    assert not masking.check_transfer([_row("FGSM-0.1", "fgsm", 0.85), rows[2]])["triggered"]
    other_eps = _row("Grey-FGSM-0.25", "fgsm", 0.9, eps=0.25, transfer_source="x")
    assert not masking.check_transfer([rows[0], other_eps])["evaluated"]
    assert not masking.check_transfer(rows[:2])["evaluated"]


def _conv_row(name, attack, k, n, wrapper=None, black_box=False):
    return {"name": name, "attack": attack, "status": "ok", "success_rate": k / n, "n_success": k, "n_attacked": n,
            "eps": 0.05, "norm": "linf", "targeted": False, "wrapper": wrapper, "black_box": black_box}


def test_white_box_not_converged_flags_a_stronger_non_gradient_attack():
    # The shape of fastcnn-cifar10's card: BPDA 98.9 % vs BIM 90.9 % at linf 0.05, beyond BIM's 95 % upper bound.
    rows = [_conv_row("BIM", "bim", 159, 175), _conv_row("FGSM", "fgsm", 100, 175),
            _conv_row("BPDA", "pgd", 172, 174, wrapper="bpda")]
    flag = masking.check_convergence(rows)
    assert flag["triggered"] and flag["kind"] == "convergence"
    assert "BPDA 98.9% vs the best plain gradient attack BIM 90.9% (95 % upper bound 94.3%" in flag["detail"]
    assert not masking.gradient_masking([flag])  # convergence, not masking by itself
    # Within the interval, or only EOT beating plain PGD (randomized models: check_eot's job), is not flagged.
    assert not masking.check_convergence([rows[0], _conv_row("Square", "square", 163, 175, black_box=True)])[
        "triggered"]
    both_full = [_conv_row("PGD-margin", "pgd", 98, 98), _conv_row("Square", "square", 98, 98, black_box=True)]
    assert not masking.check_convergence(both_full)["triggered"]  # 100 % vs 100 %: nothing to converge to
    eot = [_conv_row("PGD-CE", "pgd", 50, 175), _conv_row("EOT-PGD-CE", "pgd", 170, 175, wrapper="eot")]
    assert not masking.check_convergence(eot)["evaluated"]


def test_refresh_flags_adds_row_checks_to_saved_results_only_when_they_apply():
    rows = [_row("FGSM-0.1", "fgsm", 0.772), _row("Grey-FGSM-0.1", "fgsm", 0.916, transfer_source="src"),
            {**_row("AutoAttack", "autoattack", 0.9), "components": [
                {"attack": "APGD-CE", "n_attacked": 100, "n_fooled": 90},
                {"attack": "Square", "n_attacked": 10, "n_fooled": 0}]}]
    cheap = [masking.make_flag(name, False, "saved") for name in masking.FLAG_NAMES
             if name not in masking.ROW_FLAGS]
    saved = {"attacks": rows, "flags": cheap, "gradient_masking": False}
    fresh = masking.refresh_flags(saved)
    assert fresh["gradient_masking"] is True and saved["gradient_masking"] is False  # input untouched
    added = next(f for f in fresh["flags"] if f["name"] == "transfer_stronger_than_white_box")
    assert added["triggered"] and added["added_from_rows"]
    assert [f["name"] for f in fresh["flags"]] == [n for n in masking.FLAG_NAMES if n != "white_box_not_converged"]
    square = next(f for f in fresh["flags"] if f["name"] == "autoattack_square_gain")
    assert square["evaluated"] and not square["triggered"] and square["added_from_rows"]
    # Already present (a current results.json): left as saved. No transfer rows: nothing to add.
    assert masking.refresh_flags(fresh) == fresh
    plain = {"attacks": rows[:1], "flags": cheap, "gradient_masking": False}
    assert masking.refresh_flags(plain) is plain


# ----------------------------------------------------------------- evaluate()
def test_evaluate_writes_results_json_md_and_png(toy_model, toy_data, tmp_path):
    _, (xt, yt) = toy_data
    res = evaluate_fn(toy_model, (xt, yt), suite="hash-gi", n=40, only=["FGSM", "BIM", "DeepFool"],
                      out_dir=tmp_path, progress=False, masking_subset=40)
    assert REQUIRED_KEYS <= set(res)
    assert res["n"] == 40 and res["suite"] == "hash-gi" and res["seed"] == 0
    assert res["backend"] == keras.backend.backend() and res["versions"]["keras"] == keras.__version__
    assert res["settings"] == "mnist" and "inferred" in res["settings_source"]
    assert [a["name"] for a in res["attacks"]] == ["FGSM", "BIM", "DeepFool"]
    for a in res["attacks"]:
        assert ATTACK_KEYS <= set(a) and a["status"] == "ok", a.get("error")
        assert 0.0 <= a["success_rate"] <= 1.0 and a["n_attacked"] == res["n_correct"]
    fgsm = res["attacks"][0]
    assert fgsm["params"]["eps"] == 0.3 and fgsm["mean_linf"] == pytest.approx(0.3, abs=1e-5)
    assert res["attacks"][2]["rho"] > 0
    assert {f["name"] for f in res["flags"]} == set(masking.FLAG_NAMES)
    assert res["gradient_masking"] is False
    assert set(res["eps_sweep"]["curves"]) == {"FGSM", "PGD-CE", "PGD-margin"}
    assert 1.0 in res["eps_sweep"]["eps"] and 0.3 in res["eps_sweep"]["eps"]
    assert res["robustness_estimator"]["g"] > 0

    on_disk = _strict_json((tmp_path / "results.json").read_text())
    assert on_disk == _strict_json(json.dumps(res))
    md = (tmp_path / "results.md").read_text()
    assert "| FGSM |" in md and "gradient masking: no" in md and "zero_gradients" in md
    png = (tmp_path / "success_vs_eps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_evaluate_loads_the_test_split_named_by_the_metadata(toy_model, toy_data, monkeypatch):
    import sys

    _, (xt, yt) = toy_data
    calls = []

    def fake_load(name, data_dir=None, split=None):
        calls.append((name, split))
        return xt, yt

    # The module, not the function the package exports under the same name, holds the loader it calls.
    monkeypatch.setattr(sys.modules["hardened.evaluation.evaluate"], "load_dataset", fake_load)
    monkeypatch.setattr(toy_model, "hardened_metadata", {"dataset": "fashion_mnist"}, raising=False)
    res = evaluate_fn(toy_model, suite="hash-gi", n=20, only=["FGSM"], progress=False, masking_subset=20)
    assert calls == [("fashion_mnist", "test")]
    assert res["dataset"] == "fashion_mnist" and res["settings"] == "mnist" and res["n"] == 20
    assert "load_dataset" in res["data_source"]


def test_evaluate_rejects_bad_arguments_clearly(toy_model, toy_data):
    _, (xt, yt) = toy_data
    kw = {"progress": False}
    with pytest.raises(ValueError, match="Unknown suite"):
        evaluate_fn(toy_model, (xt, yt), suite="strongest", **kw)
    for bad_n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            evaluate_fn(toy_model, (xt, yt), n=bad_n, **kw)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_fn(toy_model, (xt * 255.0, yt), **kw)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        evaluate_fn(toy_model, (xt, yt + 10), **kw)
    with pytest.raises(ValueError, match="must match"):
        evaluate_fn(toy_model, (xt, yt[:-1]), **kw)
    with pytest.raises(ValueError, match="one-hot"):
        evaluate_fn(toy_model, (xt, np.eye(10)[yt]), **kw)
    with pytest.raises(ValueError, match="names no dataset"):
        evaluate_fn(toy_model, **kw)
    with pytest.raises(ValueError, match="pair"):
        evaluate_fn(toy_model, xt, **kw)
    with pytest.raises(ValueError, match="Unknown attack name"):
        evaluate_fn(toy_model, (xt, yt), only=["FGSMM"], **kw)
    with pytest.raises(ValueError, match="shape"):
        evaluate_fn(toy_model, (xt[:, :4], yt), **kw)
    with pytest.raises(TypeError, match="keras.Model"):
        evaluate_fn(lambda x: x, (xt, yt), **kw)


def test_attack_errors_are_recorded_not_hidden(toy_model, toy_data, monkeypatch):
    _, (xt, yt) = toy_data

    def boom(spec, seed=None):
        raise RuntimeError("attack exploded")

    monkeypatch.setattr(evaluate_module._run, "make_attack", boom)
    res = evaluate_fn(toy_model, (xt, yt), n=20, only=["FGSM"], progress=False, masking_subset=20)
    assert res["attacks"][0]["status"] == "error" and "exploded" in res["attacks"][0]["error"]
    assert res["summary"]["n_errors"] == 1
    with pytest.raises(RuntimeError, match="exploded"):
        evaluate_fn(toy_model, (xt, yt), n=20, only=["FGSM"], progress=False, masking_subset=20, strict=True)


@pytest.mark.slow
def test_full_suites_run_on_a_randomized_view(toy_model, toy_data, tmp_path):
    _, (xt, yt) = toy_data
    gi3 = apply_gi(toy_model, "gi3", 0.2, resample="per_call", seed=5)
    res = evaluate_fn(gi3, (xt, yt), suite="full", n=40, quick=True, out_dir=tmp_path, progress=False)
    by_name = {a["name"]: a for a in res["attacks"]}
    assert res["randomized"] and _flags(res)["randomized"]["triggered"]
    assert all(a["status"] != "error" for a in res["attacks"]), [a.get("error") for a in res["attacks"]]
    for name in ("EOT-PGD-CE", "EOT-PGD-margin", "FixedRand-PGD-CE", "FixedRand-PGD-margin"):
        assert by_name[name]["status"] == "ok"
    assert _flags(res)["eot_stronger_than_plain"]["evaluated"]
    assert res["budget"]["quick"] and res["budget"]["capped_attacks"]


def test_quick_caps_dict_lowers_only_images():
    from hardened.evaluation.suites import build_suite

    full = {s.name: s for s in build_suite("full", dataset="cifar10")}
    capped = {s.name: s for s in build_suite("full", dataset="cifar10", quick={"C&W": 2})}
    assert capped["C&W"].max_images == 2 and capped["C&W"].quick_capped
    assert capped["C&W"].params == full["C&W"].params  # the attack itself is unchanged
    assert capped["EAD"].max_images == 10  # the default quick caps still apply
    with pytest.raises(ValueError, match="unknown attack"):
        build_suite("full", dataset="cifar10", quick={"CW": 2})
    with pytest.raises(ValueError, match="integers >= 1"):
        build_suite("full", dataset="cifar10", quick={"C&W": 0})


def test_interrupted_evaluation_resumes_without_rerunning_finished_attacks(toy_model, toy_data, tmp_path,
                                                                          monkeypatch):
    _, (xt, yt) = toy_data
    kwargs = dict(suite="hash-gi", n=30, only=["FGSM", "BIM"], out_dir=tmp_path, progress=False, masking_subset=30)
    fresh = evaluate_fn(toy_model, (xt, yt), **{**kwargs, "out_dir": tmp_path / "fresh"})
    assert not (tmp_path / "fresh" / evaluate_module.PARTIAL_JSON).exists()  # removed once complete

    real_run_spec = evaluate_module._run_spec
    calls = []

    def interrupted(spec, *args):
        calls.append(spec.name)
        if spec.name == "BIM":
            raise KeyboardInterrupt  # the session ends during the second attack
        return real_run_spec(spec, *args)

    monkeypatch.setattr(evaluate_module, "_run_spec", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_fn(toy_model, (xt, yt), **kwargs)
    assert (tmp_path / evaluate_module.PARTIAL_JSON).exists()

    calls.clear()
    monkeypatch.setattr(evaluate_module, "_run_spec", lambda spec, *args: calls.append(spec.name)
                        or real_run_spec(spec, *args))
    resumed = evaluate_fn(toy_model, (xt, yt), **kwargs, resume=True)
    assert calls == ["BIM"]  # FGSM came from the partial file
    for a, b in zip(resumed["attacks"], fresh["attacks"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}

    # Another seed is another evaluation: a partial file of seed 0 is not reused.
    monkeypatch.setattr(evaluate_module, "_run_spec", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_fn(toy_model, (xt, yt), **kwargs)
    calls.clear()
    monkeypatch.setattr(evaluate_module, "_run_spec", lambda spec, *args: calls.append(spec.name)
                        or real_run_spec(spec, *args))
    evaluate_fn(toy_model, (xt, yt), **{**kwargs, "seed": 1}, resume=True)
    assert calls == ["FGSM", "BIM"]


def test_reuse_takes_matching_rows_of_earlier_results_and_runs_the_rest(toy_model, toy_data, tmp_path,
                                                                         monkeypatch):
    _, (xt, yt) = toy_data
    kwargs = dict(suite="hash-gi", n=30, progress=False, masking_subset=30)
    evaluate_fn(toy_model, (xt, yt), **kwargs, only=["FGSM", "BIM"], out_dir=tmp_path / "card")
    card = records.read_results(tmp_path / "card" / evaluate_module.RESULTS_JSON)
    real_run_spec = evaluate_module._run_spec
    calls = []
    monkeypatch.setattr(evaluate_module, "_run_spec", lambda spec, *args: calls.append(spec.name)
                        or real_run_spec(spec, *args))
    again = evaluate_fn(toy_model, (xt, yt), **kwargs, only=["FGSM", "BIM", "MIM"], reuse=[card])
    assert calls == ["MIM"] and again["reused"] == ["FGSM", "BIM"]
    assert again["attacks"][:2] == card["attacks"]
    # A row whose attack changed since (here BIM's steps) is run again; so is everything of another seed.
    changed = copy.deepcopy(card)
    changed["attacks"][1]["params"]["steps"] = 7
    calls.clear()
    evaluate_fn(toy_model, (xt, yt), **kwargs, only=["FGSM", "BIM"], reuse=[changed])
    assert calls == ["BIM"]
    calls.clear()
    evaluate_fn(toy_model, (xt, yt), **kwargs, only=["FGSM", "BIM"], reuse=[card], seed=1)
    assert calls == ["FGSM", "BIM"]


def test_a_randomized_models_attack_result_does_not_depend_on_the_attacks_run_before_it(toy_model, toy_data):
    # The layers' SeedGenerator states advance with each call; evaluate restores them before each attack,
    # so a resumed run or a narrower --only selection gives the same entry.
    _, (xt, yt) = toy_data
    kwargs = dict(suite="hash-gi", n=30, progress=False, masking_subset=30)
    gi3 = apply_gi(toy_model, "gi3", 0.5, resample="per_call", seed=5)
    both = evaluate_fn(gi3, (xt, yt), only=["FGSM", "BIM"], **kwargs)
    alone = evaluate_fn(gi3, (xt, yt), only=["BIM"], **kwargs)
    assert both["clean_accuracy"] == alone["clean_accuracy"]
    assert both["attacks"][1]["success_rate"] == alone["attacks"][0]["success_rate"]
    assert both["attacks"][1]["mean_linf"] == alone["attacks"][0]["mean_linf"]


# ----------------------------------------------------------------- paper suites (seeds 002, 003) and transfer
@pytest.mark.parametrize("family", ["mnist", "cifar10"])
def test_paper_suites_keep_the_papers_eps_steps_and_both_targeted_and_untargeted_rows(family):
    s2 = {s.name: s for s in suites.build_suite("prune-la", dataset=family, backend="jax")}
    for eps in (0.1, 0.15, 0.25):  # seed 002 Tables I-II, MNIST and CIFAR-10 alike
        for name, targeted in ((f"FGSM-{eps:g}", False), (f"FGSM-T-{eps:g}", True), (f"BIM-T-{eps:g}", True),
                               (f"BIM-{eps:g}", False), (f"Grey-FGSM-{eps:g}", False)):
            spec = s2[name]
            assert spec.targeted is targeted and spec.eps >= eps and spec.params["eps"] >= eps, name
            assert spec.suite == "prune-la" and "seed 002" in spec.source, name
        assert s2[f"BIM-T-{eps:g}"].params["steps"] >= 100
    assert s2["C&W"].targeted and s2["C&W"].params["steps"] >= 100 and s2["C&W"].params["binary_search_steps"] >= 10
    assert s2["Grey-C&W"].params == s2["C&W"].params and s2["Grey-C&W"].targeted
    assert s2["DDN"].attack == "ddn"
    transfer = {n for n, s in s2.items() if s.transfer}
    assert transfer == {"Grey-C&W", "Grey-FGSM-0.1", "Grey-FGSM-0.15", "Grey-FGSM-0.25"}
    assert all(s2[n].black_box for n in transfer)
    assert all(s.paper_images == 1000 for n, s in s2.items() if n.startswith(("FGSM", "C&W")))

    s3 = {s.name: s for s in suites.build_suite("defendpp", dataset=family, backend="jax")}
    assert list(s3) == ["FGSM", "BIM", "C&W", "DDN"]
    floor = {"mnist": 0.2, "cifar10": 0.05}[family]  # seed 003 Sec. 4.1
    assert s3["FGSM"].params["eps"] >= floor and s3["BIM"].params["eps"] >= floor
    assert s3["BIM"].params["steps"] >= 100
    assert s3["C&W"].params["binary_search_steps"] >= 5 and s3["C&W"].params["steps"] >= 20  # 5 x 20
    assert not any(s.targeted or s.transfer for s in s3.values())
    assert all("seed 003" in s.source for s in s3.values())

    # `full` is still seed 000 + adaptive, and `quick` only lowers image counts.
    full = suites.build_suite("full", dataset=family, backend="jax")
    assert not any(s.transfer or s.suite.startswith("seed00") for s in full)
    for suite in ("prune-la", "defendpp"):
        plain = suites.build_suite(suite, dataset=family, backend="jax")
        quick = suites.build_suite(suite, dataset=family, backend="jax", quick=True)
        for a, b in zip(plain, quick):
            assert (a.name, a.params, a.eps, a.targeted) == (b.name, b.params, b.eps, b.targeted)
            assert b.max_images == a.max_images or (b.quick_capped and b.max_images < (a.max_images or 10**9))
    assert not any(s.quick_capped for s in suites.build_suite("defendpp", dataset=family, quick=True))


@pytest.fixture(scope="module")
def other_toy_model(toy_data):
    # A slightly different target: other initialisation, fewer epochs, so its gradients differ from the source's.
    (x, y), _ = toy_data
    return toy.train_toy(toy.tiny_classifier(seed=7, name="toy_target"), x, y, epochs=3, batch_size=100,
                         learning_rate=0.01)


def test_transfer_specs_are_skipped_with_a_reason_without_a_source(other_toy_model, toy_data):
    _, (xt, yt) = toy_data
    res = evaluate_fn(other_toy_model, (xt, yt), suite="prune-la", n=20, only=["FGSM-0.25", "Grey-FGSM-0.25"],
                      progress=False, masking_subset=20)
    fgsm, grey = res["attacks"]
    assert fgsm["status"] == "ok" and "transfer_source" not in fgsm
    assert grey["status"] == "skipped" and grey["reason"] == suites.TRANSFER_SKIP_REASON
    assert "--transfer-from" in grey["reason"] and grey["transfer_source"] is None
    assert res["transfer_source"] is None and res["summary"]["n_skipped"] == 1
    assert "grey-box transfer rows are skipped" in evaluate_module.render_markdown(res)


def test_transfer_attacks_are_crafted_on_the_source_and_scored_on_the_evaluated_model(toy_model, other_toy_model,
                                                                                        toy_data):
    from hardened.attacks import get_attack

    _, (xt, yt) = toy_data
    n = 20
    res = evaluate_fn(other_toy_model, (xt, yt), suite="prune-la", n=n,
                      only=["FGSM-0.25", "Grey-FGSM-0.25", "Grey-C&W"], quick={"Grey-C&W": 1}, progress=False,
                      masking_subset=n, transfer_source=toy_model)
    by = {e["name"]: e for e in res["attacks"]}
    assert all(e["status"] == "ok" for e in res["attacks"]), [e.get("error") for e in res["attacks"]]
    src = res["transfer_source"]
    assert src["model_name"] == toy_model.name and src["recorded_from"] == "argument"
    assert len(src["weights_digest"]) == 64

    # Recompute the grey-box FGSM by hand: FGSM on the *source*, predictions of the *evaluated* model.
    x, y = xt[:n], yt[:n]
    correct = np.flatnonzero(metrics.predict_labels(other_toy_model, x) == y)
    x_adv = get_attack("fgsm", eps=0.25).generate(toy_model, x[correct], y[correct])
    on_target = metrics.predict_labels(other_toy_model, x_adv) != y[correct]
    on_source = metrics.predict_labels(toy_model, x_adv) != y[correct]
    grey = by["Grey-FGSM-0.25"]
    assert grey["n_attacked"] == len(correct) and grey["n_success"] == int(on_target.sum())
    assert grey["source_success_rate"] == pytest.approx(on_source.mean())
    assert grey["transfer_source"] == toy_model.name and grey["black_box"]
    white = get_attack("fgsm", eps=0.25).generate(other_toy_model, x[correct], y[correct])
    assert not np.allclose(white, x_adv)  # the source's gradients differ: a white-box run would not match
    assert by["FGSM-0.25"]["n_success"] == int((metrics.predict_labels(other_toy_model, white) != y[correct]).sum())

    cw = by["Grey-C&W"]  # targeted: 1 source image x 9 targets, success = the evaluated model hits the target
    assert cw["targeted"] and cw["n_attacked"] == 9 and cw["n_images"] == 1
    assert cw["source_success_rate"] is not None and cw["transfer_source"] == toy_model.name


def test_transfer_source_is_checked(other_toy_model, toy_data):
    _, (xt, yt) = toy_data
    kw = dict(suite="prune-la", n=10, only=["Grey-FGSM-0.25"], progress=False, masking_subset=10)
    with pytest.raises(ValueError, match="inputs and classes"):
        evaluate_fn(other_toy_model, (xt, yt), transfer_source=toy.tiny_classifier(num_classes=5), **kw)
    with pytest.raises(TypeError, match="transfer_source must be a keras.Model"):
        evaluate_fn(other_toy_model, (xt, yt), transfer_source="cwcnn-mnist", **kw)


def test_resume_with_another_transfer_source_does_not_reuse_entries(toy_model, other_toy_model, toy_data, tmp_path,
                                                                    monkeypatch):
    _, (xt, yt) = toy_data
    kwargs = dict(suite="prune-la", n=20, only=["FGSM-0.25", "Grey-FGSM-0.25"], out_dir=tmp_path, progress=False,
                  masking_subset=20)
    real_run_spec = evaluate_module._run_spec
    calls = []

    def run(interrupt):
        def patched(spec, *args):
            calls.append(spec.name)
            if interrupt and spec.name == "Grey-FGSM-0.25":
                raise KeyboardInterrupt
            return real_run_spec(spec, *args)
        monkeypatch.setattr(evaluate_module, "_run_spec", patched)

    run(interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        evaluate_fn(other_toy_model, (xt, yt), transfer_source=toy_model, **kwargs)
    assert calls == ["FGSM-0.25", "Grey-FGSM-0.25"]
    # Another source (here: the evaluated model itself, a white-box "transfer"): nothing is reused.
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        evaluate_fn(other_toy_model, (xt, yt), transfer_source=other_toy_model, resume=True, **kwargs)
    assert calls == ["FGSM-0.25", "Grey-FGSM-0.25"]
    # The same source again: the finished attack comes from the partial file.
    calls.clear()
    run(interrupt=False)
    res = evaluate_fn(other_toy_model, (xt, yt), transfer_source=other_toy_model, resume=True, **kwargs)
    assert calls == ["Grey-FGSM-0.25"]
    assert res["transfer_source"]["model_name"] == other_toy_model.name
    # White-box "transfer" from the model itself is the white-box attack.
    fgsm, grey = res["attacks"]
    assert grey["n_success"] == fgsm["n_success"] and grey["source_success_rate"] == fgsm["success_rate"]


def test_cli_transfer_from_records_the_source_checkpoint(toy_model, other_toy_model, toy_data, tmp_path):
    import hardened
    from hardened.cli import main

    _, (xt, yt) = toy_data
    source = hardened.save_pretrained(toy_model, tmp_path / "source-ckpt", metadata={"recipe": "unit-test"})
    target = hardened.save_pretrained(other_toy_model, tmp_path / "target-ckpt", metadata={"recipe": "unit-test"})
    np.savez(tmp_path / "test.npz", x=xt[:20], y=yt[:20])
    out = tmp_path / "eval"
    code = main(["evaluate", str(target), "--suite", "prune-la", "--n", "20", "--data", str(tmp_path / "test.npz"),
                 "--only", "Grey-FGSM-0.25", "--transfer-from", str(source), "--out", str(out), "--no-progress"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    src = res["transfer_source"]
    sha = json.loads((source / "metadata.json").read_text())["files"]["model.safetensors"]["sha256"]
    assert src["recorded_from"] == "hardened_metadata" and src["weights_sha256"] == sha
    assert res["attacks"][0]["status"] == "ok" and res["attacks"][0]["transfer_source"] == src["model_name"]
    assert "--transfer-from" in res["command"] and "transfer source" in (out / "results.md").read_text()


def test_quick_tour_profile_caps_images_and_names_what_it_leaves_out():
    """`--quick tour` only lowers image counts; EAD and targeted ZOO are skipped with the reason, not weakened."""
    from hardened.evaluation.suites import build_suite

    full = {s.name: s for s in build_suite("full", dataset="mnist", backend="torch")}
    tour = {s.name: s for s in build_suite("full", dataset="mnist", backend="torch", quick="tour")}
    assert tour.keys() == full.keys()
    for name, spec in tour.items():
        assert spec.params == full[name].params  # attack strength untouched
    assert tour["C&W"].max_images == 1 and tour["C&W"].quick_capped
    assert "tour" in tour["EAD"].skip_reason and "tour" in tour["ZOO-targeted"].skip_reason
    assert tour["PGD-CE"].max_images is None and tour["PGD-CE"].skip_reason is None
    with pytest.raises(ValueError, match="quick profile"):
        build_suite("full", dataset="mnist", quick="fast")


def test_summary_table_shows_rates_with_intervals_sizes_flags_and_duration():
    from hardened.reporting.summary import format_summary

    results = {
        "model_name": "toy", "dataset": "mnist", "backend": "torch", "seed": 0, "n": 100, "n_correct": 98,
        "clean_accuracy": 0.98, "randomized": False, "budget": {"note": "quick profile 'tour': fewer images for C&W"},
        "attacks": [
            {"name": "PGD-CE", "status": "ok", "eps": 0.3, "norm": "linf", "targeted": False, "success_rate": 0.5,
             "n_images": 100, "n_attacked": 98, "n_success": 49, "seconds": 12.0},
            {"name": "C&W", "status": "ok", "eps": None, "norm": "l2", "targeted": True, "success_rate": 1.0,
             "n_images": 1, "n_attacked": 9, "n_success": 9, "seconds": 60.0, "quick_capped": True},
            {"name": "EAD", "status": "skipped", "reason": "left out", "eps": None, "norm": "l1", "targeted": True,
             "success_rate": None, "n_images": 0, "n_attacked": 0, "n_success": 0, "seconds": 0.0},
        ],
        "flags": [{"name": "ce_margin_gap", "kind": "masking", "triggered": True, "evaluated": True, "detail": "gap"},
                  {"name": "zero_gradients", "kind": "masking", "triggered": False, "evaluated": True}],
    }
    text = format_summary(results, seconds=403.2)
    assert "clean accuracy 98.0 % [93.0, 99.4] on n=100" in text
    pgd = next(line for line in text.splitlines() if line.strip().startswith("PGD-CE"))
    assert "98" in pgd and "50.0 %" in pgd and "[40.3, 59.7]" in pgd
    assert "1x9" in text and "quick budget" in text and "skipped: left out" in text
    assert "worst case at linf <= 0.3: PGD-CE 50.0 %" in text and "robust accuracy 49.0 %" in text
    assert "gradient masking: YES (1 of 2 checks triggered)" in text and "! ce_margin_gap: gap" in text
    assert text.endswith("finished in 6 min 43 s")


def test_every_flag_is_declared_once_in_the_registry():
    # One declaration per flag: kind, threshold and the card's sentence come from FLAGS, and the derived
    # tables agree with it.
    assert list(masking.FLAGS) == list(masking.FLAG_NAMES)
    assert set(masking.ROW_FLAGS) == {n for n, s in masking.FLAGS.items() if s.from_rows}
    for name, spec in masking.FLAGS.items():
        assert spec.kind in ("masking", "convergence", "randomness"), name
        assert spec.sentence and spec.sentence[0].isupper(), name
        flag = masking.make_flag(name, True, "evidence")
        assert flag["kind"] == spec.kind and flag["threshold"] == spec.threshold
    assert masking.make_flag("white_box_not_converged", True, "x")["kind"] == "convergence"
    assert not masking.gradient_masking([masking.make_flag("white_box_not_converged", True, "x")])
    assert masking.gradient_masking([masking.make_flag("ce_margin_gap", True, "x")])
