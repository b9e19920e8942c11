"""Seed 004's recipes: HRS bottom-up training (`hardened.recipes.hrs`) and adversarial
training (`hardened.recipes.adversarial`), on tiny models and synthetic 28x28 data.

One HRS run is interrupted at its third channel and resumed; every HRS test reads
that pair of runs (spied through `fit_model`). No dataset files are read.
"""

import json

import keras
import numpy as np
import pytest

import hardened
from hardened.attacks import get_attack
from hardened.models import TEST_CONFIGS, build_model, hrs_path_model, normalize_defense
from hardened.recipes import adversarial as adv_mod
from hardened.recipes import hrs as hrs_mod
from hardened.recipes import presets
from hardened.recipes.run import KIND_RUNNERS


def synthetic(n, seed):
    """28x28x1 images: class k has a bright 7x7 block at cell k of a 4x4 grid, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0.0, 0.3, (n, 28, 28, 1))
    for i, k in enumerate(y):
        r, c = divmod(int(k), 4)
        x[i, 7 * r:7 * r + 7, 7 * c:7 * c + 7, 0] += 0.6
    return np.clip(x, 0, 1).astype("float32"), y.astype("int64")


TRAIN, TEST = synthetic(160, 0), synthetic(48, 1)


def fake_load_split(dataset, data_dir=None, max_train=None, max_test=None):
    (x, y), (xt, yt) = TRAIN, TEST
    return (x[:max_train], y[:max_train]), (xt[:max_test], yt[:max_test])


def run_kwargs(out, **changes):
    kwargs = {"out_dir": out, "base_dir": None, "work_dir": None, "data_dir": None, "precision": "auto", "seed": 0,
              "max_train": None, "max_test": None, "verbose": 0, "note": None, "fit_overrides": {}}
    kwargs.update(changes)
    return kwargs


TINY_FIT = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
            "warmup_epochs": 0.2, "augment": None}
HRS_RECIPE = {"kind": "hrs", "builder": "hrs_cnn", "dataset": "mnist",
              "kwargs": {**TEST_CONFIGS["hrs_cnn"], "dropout": 0.1},  # channels (3, 2)
              "fit": TINY_FIT, "fit_block2": {"lr": 0.02}, "eval_passes": 2}


def branch_weights(model):
    """{top-level layer name: [arrays]} of a trainer model."""
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


class Interrupted(Exception):
    pass


# ----------------------------------------------------------------------------- HRS
@pytest.fixture(scope="module")
def hrs_runs(tmp_path_factory):
    """Run 1 stops at the third fit (block-1 channel 2); run 2 resumes and finishes. Every fit is spied."""
    out = tmp_path_factory.mktemp("hrs") / "hrs-tiny"
    calls = []
    real_fit = hrs_mod.fit_model
    stop_at = {"n": 2}

    def spy_fit(model, train, test, out_dir, **kw):
        if len(calls) == stop_at["n"]:
            stop_at["n"] = None
            raise Interrupted(model.name)
        call = {"name": model.name, "before": branch_weights(model), "model": model,
                "trainable": {layer.name: bool(layer.trainable_weights) for layer in model.layers}}
        summary = real_fit(model, train, test, out_dir, **kw)
        call["after"] = branch_weights(model)
        calls.append(call)
        return summary

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hrs_mod, "load_split", fake_load_split)
        mp.setattr(hrs_mod, "fit_model", spy_fit)
        keras.utils.set_random_seed(0)
        with pytest.raises(Interrupted):
            hrs_mod.run("hrs-tiny", HRS_RECIPE, **run_kwargs(out))
        n_first = len(calls)
        state_after_first = json.loads((out / "_hrs" / "state.json").read_text())
        hrs_mod.run("hrs-tiny", HRS_RECIPE, **run_kwargs(out))
    return {"out": out, "calls": calls, "n_first": n_first, "state_after_first": state_after_first}


def test_hrs_bottom_up_order_and_resume(hrs_runs):
    names = [c["name"] for c in hrs_runs["calls"]]
    assert names == ["hrs_block1_path0", "hrs_block1_path1",  # run 1, stopped before block-1 channel 2
                     "hrs_block1_path2", "hrs_block2_path0", "hrs_block2_path1"]  # run 2 starts at channel 2
    assert hrs_runs["n_first"] == 2
    assert sorted(hrs_runs["state_after_first"]["done"]) == ["block1_path0", "block1_path1"]
    # Channels finished by run 1 are reloaded, not retrained: the checkpoint holds run 1's weights.
    final = hardened.load_pretrained(hrs_runs["out"])
    for i in (0, 1):
        trained = hrs_runs["calls"][i]["after"][f"block1_path{i}"]
        branch = final.get_layer("switch1").branches[i]
        for a, b in zip(trained, branch.get_weights()):
            np.testing.assert_array_equal(a.astype("float32"), b)


def test_hrs_block1_trains_with_fresh_heads_block2_over_frozen_block1(hrs_runs):
    calls = {c["name"]: c for c in hrs_runs["calls"]}
    heads = []
    for i in range(3):
        call = calls[f"hrs_block1_path{i}"]
        assert set(call["before"]) >= {f"block1_path{i}", "block2_path0"}
        assert "switch1" not in call["before"] and "switch2" not in call["before"]
        heads.append(call["before"]["block2_path0"])
    # Each block-1 channel gets its own freshly initialised upper layers.
    assert not np.allclose(heads[0][0], heads[1][0]) and not np.allclose(heads[1][0], heads[2][0])
    for j in range(2):
        call = calls[f"hrs_block2_path{j}"]
        assert call["trainable"]["switch1"] is False and call["trainable"][f"block2_path{j}"] is True
        for a, b in zip(call["before"]["switch1"], call["after"]["switch1"]):
            np.testing.assert_array_equal(a, b)  # block 1 is frozen while block 2 trains
        # Block-1 weights seen by block 2 are those block 1's training left.
        for i in range(3):
            branch = [w for w in call["model"].get_layer("switch1").branches[i].get_weights()]
            for a, b in zip(calls[f"hrs_block1_path{i}"]["after"][f"block1_path{i}"], branch):
                np.testing.assert_array_equal(a, b)


def test_hrs_every_channel_trained(hrs_runs):
    for call in hrs_runs["calls"]:
        block, k = call["name"].replace("hrs_block", "").split("_path")
        key = f"block{block}_path{k}"
        changed = [not np.allclose(a, b) for a, b in zip(call["before"][key], call["after"][key])]
        assert all(changed), f"{key}: some weights did not move"


def test_hrs_checkpoint_reloads_and_is_random(hrs_runs):
    out = hrs_runs["out"]
    model = hardened.load_pretrained(out)
    meta = model.hardened_metadata
    assert meta["randomized"] is True and meta["architecture"]["builder"] == "hrs_cnn"
    assert len(meta["training"]["block1"]) == 3 and len(meta["training"]["block2"]) == 2
    assert all(c["test_accuracy"] is not None for c in meta["training"]["block1"] + meta["training"]["block2"])
    assert len(meta["test_accuracy_passes"]) == 2 and 0.0 <= meta["test_accuracy"] <= 1.0
    assert meta["fit"]["block2"]["lr"] == 0.02 and meta["fit"]["block1"]["lr"] == 0.05
    assert (out / "channel_accuracies.csv").exists()

    # A model assembled from the per-channel weight files gives the same logits on every fixed path.
    kwargs = meta["architecture"]["kwargs"]
    rebuilt = build_model("hrs_cnn", **kwargs)
    for switch in ("switch1", "switch2"):
        for branch in rebuilt.get_layer(switch).branches:
            hrs_mod._load_branch(branch, out / "_hrs" / f"{branch.name}.npz")
    x = TEST[0][:16]
    for i, j in ((0, 0), (2, 1), (1, 0)):
        for m in (model, rebuilt):
            m.get_layer("switch1").set_path(i)
            m.get_layer("switch2").set_path(j)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(rebuilt(x)),
                                   rtol=1e-5, atol=1e-5)
        path = hrs_path_model(model, i, j)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(path(x)), keras.ops.convert_to_numpy(model(x)),
                                   rtol=1e-5, atol=1e-5)

    # Random again: different passes take different paths.
    for switch in ("switch1", "switch2"):
        model.get_layer(switch).set_path(None)
    outs = [keras.ops.convert_to_numpy(model(x)) for _ in range(8)]
    assert any(not np.allclose(outs[0], o) for o in outs[1:])


def test_hrs_refuses_a_work_dir_of_another_run(hrs_runs, monkeypatch):
    monkeypatch.setattr(hrs_mod, "load_split", fake_load_split)
    with pytest.raises(ValueError, match="different run configuration"):
        hrs_mod.run("hrs-tiny", HRS_RECIPE, **run_kwargs(hrs_runs["out"], seed=1))


def test_hrs_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="base_dir"):
        hrs_mod.run("x", HRS_RECIPE, **run_kwargs(tmp_path, base_dir=tmp_path))
    with pytest.raises(ValueError, match="hrs_cnn"):
        hrs_mod.run("x", dict(HRS_RECIPE, builder="cwcnn"), **run_kwargs(tmp_path))
    with pytest.raises(TypeError, match="Unknown"):
        hrs_mod.run("x", dict(HRS_RECIPE, fit_block2={"epoch": 2}), **run_kwargs(tmp_path))


# ----------------------------------------------------------------------------- adversarial training
ADV_RECIPE = {"kind": "adversarial", "builder": "cwcnn", "dataset": "mnist",
              "kwargs": dict(TEST_CONFIGS["cwcnn"]), "attack": "pgd", "eps": 0.1, "steps": 2,
              "eps_ramp_epochs": 1.0, "monitor": {"n": 16, "steps": 2},
              "fit": dict(TINY_FIT, epochs=2, optimizer="adam", lr=1e-3)}
ADV_STEPS_PER_EPOCH = 4  # 128 images / 32


@pytest.fixture(scope="module")
def adv_runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and one stopped at the first step of epoch 2 then resumed."""
    root = tmp_path_factory.mktemp("adv")
    log = {"pairs": [], "trained": []}
    real_batch, real_step = adv_mod.adversarial_batch, adv_mod._train_step
    stop = {"at": None}

    def spy_batch(model, x, y, **kw):
        x_adv = real_batch(model, x, y, **kw)
        log["pairs"].append((np.array(x), x_adv, kw["eps"]))
        return x_adv

    def spy_step(model, x, y):
        if stop["at"] is not None and len(log["trained"]) == stop["at"]:
            stop["at"] = None
            raise Interrupted("step")
        log["trained"].append(np.array(x))
        return real_step(model, x, y)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adv_mod, "load_split", fake_load_split)
        mp.setattr(adv_mod, "adversarial_batch", spy_batch)
        mp.setattr(adv_mod, "_train_step", spy_step)
        full = adv_mod.run("adv-tiny", ADV_RECIPE, **run_kwargs(root / "full", precision="float32", max_train=128))
        pairs, trained = list(log["pairs"]), list(log["trained"])
        log["pairs"].clear()
        log["trained"].clear()
        stop["at"] = ADV_STEPS_PER_EPOCH
        kwargs = run_kwargs(root / "resumed", precision="float32", max_train=128)
        with pytest.raises(Interrupted):
            adv_mod.run("adv-tiny", ADV_RECIPE, **kwargs)
        n_before = len(log["trained"])
        log["trained"].clear()
        resumed = adv_mod.run("adv-tiny", ADV_RECIPE, **kwargs)
        n_after = len(log["trained"])
    return {"full": full, "resumed": resumed, "pairs": pairs, "trained": trained, "n_before": n_before,
            "n_after": n_after}


def test_adversarial_batches_within_eps_and_trained_on(adv_runs):
    pairs, trained = adv_runs["pairs"], adv_runs["trained"]
    assert len(pairs) == len(trained) == 2 * ADV_STEPS_PER_EPOCH
    for (x, x_adv, eps), xt in zip(pairs, trained):
        np.testing.assert_array_equal(x_adv, xt)  # the optimizer sees the adversarial batch
        delta = np.abs(x_adv - x).max()
        assert 0 < delta <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    eps = [p[2] for p in pairs]
    assert eps == sorted(eps) and eps[0] < 0.1 and eps[-1] == pytest.approx(0.1)  # ramp over the first epoch


def test_adversarial_resume_matches_uninterrupted(adv_runs):
    assert adv_runs["n_before"] == ADV_STEPS_PER_EPOCH and adv_runs["n_after"] == ADV_STEPS_PER_EPOCH
    full = hardened.load_pretrained(adv_runs["full"])
    resumed = hardened.load_pretrained(adv_runs["resumed"])
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    meta = resumed.hardened_metadata
    assert meta["adversarial_training"]["attack"] == "pgd" and meta["adversarial_training"]["steps"] == 2
    assert meta["adversarial_training"]["eps"] == 0.1
    assert meta["adversarial_training"]["step_size"] == pytest.approx(2.5 * 0.1 / 2)
    assert [r["epoch"] for r in meta["training"]["history"]] == [0, 1]
    assert meta["monitor_pgd"]["n"] == 16
    assert (adv_runs["resumed"] / "training_log.csv").exists()


def test_adversarial_batch_is_pgd_without_keep_best():
    model = build_model("cwcnn", **TEST_CONFIGS["cwcnn"])
    x, y = TEST[0][:12], TEST[1][:12]
    mine = adv_mod.adversarial_batch(model, x, y, eps=0.1, steps=3, step_size=0.04,
                                     rng=np.random.default_rng(5), num_classes=10)
    ref = get_attack("pgd", eps=0.1, steps=3, step_size=0.04, random_start=True, keep_best=False, seed=5
                     ).generate(model, x, y)
    np.testing.assert_allclose(mine, ref, atol=1e-6)


def test_attack_settings():
    s = adv_mod.attack_settings({"attack": "fgsm_rs", "eps": 8 / 255})
    assert s["steps"] == 1 and s["step_size"] == pytest.approx(1.25 * 8 / 255)
    assert adv_mod.attack_settings({"attack": "pgd", "eps": 0.3, "steps": 40})["step_size"] == pytest.approx(
        2.5 * 0.3 / 40)
    for bad, match in (({"attack": "cw"}, "attack"), ({"attack": "pgd", "eps": 2}, "eps"),
                       ({"attack": "pgd", "eps": 0.3}, "steps"), ({"attack": "fgsm_rs", "eps": 0.1, "steps": 3},
                                                                   "one step")):
        with pytest.raises(ValueError, match=match):
            adv_mod.attack_settings(bad)


# ----------------------------------------------------------------------------- presets
OUR_RECIPES = [n for n in presets.RECIPES if n.startswith(("hrs", "cwcnn-sap", "cwcnn-dropout", "cwcnn-noise",
                                                          "cwcnn-advtrain"))]


def test_seed004_recipes_are_valid():
    assert {"hrs10x10-mnist", "hrs10x10-cifar10", "cwcnn-sap-cifar10", "cwcnn-dropout0.7-cifar10",
            "cwcnn-noise0.2-mnist", "cwcnn-advtrain-mnist", "cwcnn-advtrain-cifar10"} <= set(OUR_RECIPES)
    from hardened.recipes.train import FIT_KEYS as _FIT_KEYS

    for name in OUR_RECIPES:
        recipe = presets.RECIPES[name]
        base = presets.RECIPES["cwcnn-" + recipe["dataset"]]
        assert recipe["kind"] in KIND_RUNNERS or recipe["kind"] == "base", name
        assert set(recipe["fit"]) <= set(_FIT_KEYS), name
        if recipe["kind"] == "hrs":
            hrs_mod._block_fits(recipe, {}, _FIT_KEYS)
            assert recipe["kwargs"]["input_shape"] == base["kwargs"]["input_shape"]
        elif recipe["kind"] == "adversarial":
            adv_mod.attack_settings(recipe)
        else:
            assert recipe["fit"] == base["fit"], name  # same schedule as the undefended base
            spec = normalize_defense(recipe["kwargs"]["defense"])
            tiny = dict(TEST_CONFIGS["cwcnn"], input_shape=recipe["kwargs"]["input_shape"], defense=spec)
            model = build_model("cwcnn", **tiny)
            assert hardened.layers.randomized_layers(model), name
