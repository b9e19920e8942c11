"""hardened.evaluation.des: seed 004's DES comparison (arithmetic, toy run, resume, CLI, saved folders).

Real checkpoints (HRS, SAP, dropout, noise, adversarial training) are not needed:
the comparison runs on a tiny toy classifier (the base), a copy of it (a
deterministic member) and a Gaussian-noise view of it (a randomized member),
with 5-step PGD and cheap masking checks so the whole file stays fast.
"""

import copy
import importlib
import json
import shutil

import keras
import numpy as np
import pytest

from hardened import cli
from hardened.evaluation import des, masking, metrics, suites, toy
from hardened.reporting import des_report
from hardened.zoo import from_pretrained, resolve_name
from hardened.layers.stochastic import GaussianNoiseInjection

evaluate_module = importlib.import_module("hardened.evaluation.evaluate")

N = 30
EPS = 0.1


# ----------------------------------------------------------------- hand-made des.json
def _results(acc, randomized, rates, masking_flags=()):
    """A minimal results.json of `evaluate` with the given success rates ({spec: rate or None=skipped})."""
    attacks = []
    for name, rate in rates.items():
        if rate is None:
            attacks.append({"name": name, "status": "skipped", "success_rate": None, "n_attacked": 0,
                            "n_success": 0, "reason": "model is deterministic: ..."})
        else:
            attacks.append({"name": name, "status": "ok", "success_rate": rate, "n_attacked": 200,
                            "n_success": int(round(200 * rate))})
    flags = [{"name": f, "triggered": True, "kind": "masking"} for f in masking_flags]
    return {"clean_accuracy": acc, "n": 200, "randomized": randomized, "attacks": attacks, "flags": flags,
            "gradient_masking": bool(masking_flags)}


ALL_SPECS = list(des.SPEC_NAMES.values())


def _hand_made(tmp_path):
    """A DES folder written by hand: base 90 %, two HRS members, one adversarially trained member."""
    det = {s: None for s in ALL_SPECS}
    det.update({"PGD-CE": 1.0, "PGD-margin": 1.0})
    base = _results(0.90, False, det)
    hrs_a = _results(0.895, True, {s: 0.5 for s in ALL_SPECS})
    hrs_b = _results(0.90, True, {**{s: 0.8 for s in ALL_SPECS}, "EOT-PGD-CE": 0.9})
    adv = _results(0.85, False, {**det, "PGD-CE": 0.6, "PGD-margin": 0.7}, masking_flags=("ce_margin_gap",))
    records = []
    for folder, results in (("base", base), ("hrs-a", hrs_a), ("hrs-b", hrs_b), ("adv", adv)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps(results))
    base_rec = des.member_record(base, family=None, name="base", strength=None, source="base", folder="base")
    for family, folder, strength, results in (("HRS", "hrs-a", "10x10", hrs_a), ("HRS", "hrs-b", "20x20", hrs_b),
                                              ("adv-train", "adv", 8 / 255, adv)):
        records.append(des.member_record(results, family=family, name=folder, strength=strength, source=folder,
                                         folder=folder))
    inputs = {"command": "hand-made", "commit": None, "commit_dirty": None, "dataset": "cifar10",
              "data_source": "test", "settings_family": "cifar10", "n": 200, "n_requested": 200, "eps": 8 / 255,
              "norm": "linf", "seed": 0, "batch_size": 128, "attacks": list(des.ATTACKS),
              "settings": list(des.SETTINGS), "eot_samples": 10, "eta": 0.002, "steps": 100,
              "spec_names": {f"{a}/{s}": n for (a, s), n in des.SPEC_NAMES.items()}, "backend": "none",
              "versions": {}, "base": "base", "members": {}}
    return des.build_des(inputs, base_rec, records)


def test_des_rows_follow_seed_004_definition(tmp_path):
    d = _hand_made(tmp_path)
    rows = {(r["member"], r["attack"], r["setting"]): r for r in d["rows"]}
    assert len(d["rows"]) == 3 * 2 * 3
    r = rows[("hrs-a", "PGD", "white-box")]
    # Δd = (1 − 0.5) − (1 − 1.0) = 0.5; Δt = 0.90 − 0.895 = 0.005; DES = 0.5 / (0.005 + 0.002).
    assert r["defense_rate"] == pytest.approx(0.5) and r["defense_gain"] == pytest.approx(0.5)
    assert r["accuracy_drop"] == pytest.approx(0.005)
    assert r["des"] == pytest.approx(0.5 / 0.007)
    assert r["des"] == metrics.defense_efficiency_score(0.90, 0.895, 1.0, 0.5)
    # EOT / fixed rows of a randomized member are read against the base's white-box rate.
    assert rows[("hrs-b", "PGD", "eot")]["des"] == pytest.approx(0.1 / 0.002)
    # A deterministic member gets no EOT / fixed numbers of its own.
    for setting in ("eot", "fixed"):
        row = rows[("adv", "CW-PGD", setting)]
        assert row["status"] == "n/a" and row["note"] == des.NOT_APPLICABLE and row["des"] is None
    assert rows[("adv", "CW-PGD", "white-box")]["des"] == pytest.approx(0.3 / 0.052)
    means = {(m["family"], m["attack"], m["setting"]): m for m in d["mean_des"]}
    assert means[("HRS", "PGD", "white-box")]["mean_des"] == pytest.approx((0.5 / 0.007 + 0.2 / 0.002) / 2)
    assert means[("adv-train", "PGD", "eot")]["mean_des"] is None
    assert means[("adv-train", "PGD", "eot")]["note"] == des.NOT_APPLICABLE


def test_des_table_is_a_pure_function_of_des_json(tmp_path):
    d = _hand_made(tmp_path)
    frozen = copy.deepcopy(d)
    text = des_report.render_des_table(d)
    assert d == frozen  # not mutated
    assert des_report.render_des_table(json.loads(json.dumps(d))) == text  # a JSON round trip renders the same
    table2 = next(line for line in text.splitlines() if line.startswith("| HRS |"))
    assert table2.split(" | ")[1] == f"{(0.5 / 0.007 + 0.2 / 0.002) / 2:.2f}"
    assert "| adv-train | " in text and des.NOT_APPLICABLE in text
    assert "**yes** (ce_margin_gap)" in text  # the masking flag of a member is shown
    assert len([ln for ln in text.splitlines() if ln.startswith("| HRS | `hrs-a` | 10x10 | ")
                and "PGD |" in ln]) == 6  # 2 attacks x 3 settings
    assert "ε = 8/255" in text


def test_check_des_regenerates_and_catches_any_difference(tmp_path):
    d = _hand_made(tmp_path)
    des_report.write_des(d, tmp_path)
    assert (tmp_path / "des.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert des_report.check_des(tmp_path) == []
    md = tmp_path / "des.md"
    good = md.read_text()
    md.write_text(good.replace("71.43", "71.44"))
    assert des_report.check_des(tmp_path), "an edited table must be caught"
    md.write_text(good)
    results = json.loads((tmp_path / "hrs-a" / "results.json").read_text())
    results["attacks"][0]["success_rate"] = 0.49
    (tmp_path / "hrs-a" / "results.json").write_text(json.dumps(results))
    assert any("rows" in line for line in des_report.check_des(tmp_path)), "a changed saved result must be caught"


def test_arguments_are_checked_before_anything_runs(toy_models):
    base, noisy, _ = toy_models
    members = {"noise": [(noisy, 0.3)]}
    with pytest.raises(ValueError, match="base"):
        des.des_compare(members, base=None)
    for eta in (0, -0.002, float("nan")):
        with pytest.raises(ValueError, match="eta"):
            des.des_compare(members, base=base, eta=eta)
    with pytest.raises(ValueError, match="no-such-model"):
        des.des_compare({"HRS": [("no-such-model", "10x10")]}, base=base, load=from_pretrained, resolve=resolve_name)
    with pytest.raises(ValueError, match="load="):  # a name needs a loader: evaluation does not import the zoo
        des.des_compare({"HRS": [("hrs10x10-mnist", "10x10")]}, base=base)
    with pytest.raises(ValueError, match="attack"):
        des.des_compare(members, base=base, attacks=("FGSM",))
    with pytest.raises(ValueError, match="setting"):
        des.des_compare(members, base=base, settings=("black-box",))
    with pytest.raises(ValueError, match="no members"):
        des.des_compare({"HRS": []}, base=base)
    with pytest.raises(ValueError, match="eta"):
        des.des_rows({"attacks": {}}, [], ["PGD"], ["white-box"], eta=0.0)


def test_adaptive_suite_takes_the_comparisons_eps_and_eot_samples():
    default = {s.name: s for s in suites.build_suite("adaptive", dataset="mnist", randomized=True, backend="jax")}
    custom = {s.name: s for s in suites.build_suite("adaptive", dataset="mnist", randomized=True, backend="jax",
                                                    adaptive_eps=64 / 255, eot_samples=3)}
    assert default["PGD-CE"].eps == 0.3 and default["EOT-PGD-margin"].wrapper_params == {"n": 10}
    assert custom["PGD-margin"].params["eps"] == custom["FixedRand-PGD-CE"].eps == 64 / 255
    assert custom["PGD-CE"].attack == "apgd" and custom["PGD-CE"].params["steps"] == suites.ITERATIVE_STEPS
    assert custom["EOT-PGD-CE"].params["step_size"] == pytest.approx(2.5 * (64 / 255) / suites.ITERATIVE_STEPS)
    assert custom["EOT-PGD-CE"].wrapper_params == {"n": 3}
    # The default ε passed explicitly is the card's suite, spec for spec.
    same = suites.build_suite("adaptive", dataset="mnist", randomized=True, backend="jax", adaptive_eps=0.3,
                              eot_samples=10)
    assert [s.to_dict() for s in same] == [s.to_dict() for s in default.values()]
    for bad in ({"adaptive_eps": 0}, {"adaptive_eps": 2.0}, {"eot_samples": 0}, {"eot_samples": 2.5}):
        with pytest.raises(ValueError):
            suites.build_suite("adaptive", dataset="mnist", **bad)


# ----------------------------------------------------------------- toy comparison
def _cheap(mp):
    """5-step PGD (EOT's 2 samples are passed explicitly); evaluate's side checks cut to the bone.

    The masking checks and the robustness-estimator terms do not enter DES;
    on a loaded 2-core CPU they would dominate this file's time (torch most).
    """
    mp.setattr(suites, "ITERATIVE_STEPS", 5)
    real = masking.run_masking_checks

    def few_checks(model, x, y, eps_values, **kw):
        return real(model, x, y, list(eps_values)[-2:], **{**kw, "steps": 2, "cheap_black_box": False})

    mp.setattr(masking, "run_masking_checks", few_checks)
    mp.setattr(evaluate_module, "_estimator_terms", lambda *a, **k: {"note": "skipped in tests/test_des.py"})


@pytest.fixture(scope="module")
def toy_models():
    x, y = toy.synthetic_images(600, seed=0)
    base = toy.train_toy(toy.tiny_classifier(name="toy-base"), x, y, epochs=4, batch_size=100, learning_rate=0.01)
    # A randomized view sharing the base's weights: input noise (random self-ensemble style).
    inp = keras.Input((8, 8, 1), name="image")
    h = GaussianNoiseInjection(0.3, seed=3, name="noise")(inp)
    for layer in base.layers[1:]:
        h = layer(h)
    noisy = keras.Model(inp, h, name="toy-noise")
    det = keras.Model(base.input, base.output, name="toy-det")  # deterministic member (same weights)
    return base, noisy, det


@pytest.fixture(scope="module")
def test_data():
    return toy.synthetic_images(40, seed=1)


def _compare(models, data, out_dir, **kw):
    base, noisy, det = models
    return des.des_compare({"noise": [(noisy, 0.3)], "adv-train": [(det, "toy")]}, base=base, data=data, n=N,
                           eps=EPS, eot_samples=2, out_dir=out_dir, progress=False, masking_subset=10, **kw)


@pytest.fixture(scope="module")
def toy_run(toy_models, test_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("des") / "des-toy"
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        _cheap(mp)
        real = evaluate_module.evaluate
        mp.setattr(evaluate_module, "evaluate", lambda *a, **k: calls.append(k["out_dir"]) or real(*a, **k))
        result = _compare(toy_models, test_data, out)
    des_report.write_des(result, out)  # what `hardened des` does after the comparison
    return result, out, calls


def test_toy_comparison_writes_every_row(toy_run):
    d, out, calls = toy_run
    assert len(calls) == 3  # base + two members, each evaluated once
    assert {p.name for p in out.iterdir()} >= {"des.json", "des.md", "des.png", "toy-base", "toy-noise", "toy-det"}
    saved = json.loads((out / "des.json").read_text())
    assert saved == d
    inputs = d["inputs"]
    assert inputs["n"] == N and inputs["eps"] == EPS and inputs["seed"] == 0 and inputs["eta"] == 0.002
    assert inputs["eot_samples"] == 2 and inputs["command"] and "commit" in inputs
    assert len(d["rows"]) == 2 * 2 * 3
    rows = {(r["member"], r["attack"], r["setting"]): r for r in d["rows"]}
    for attack in des.ATTACKS:
        for setting in des.SETTINGS:
            assert rows[("toy-noise", attack, setting)]["status"] == "ok"
            det_row = rows[("toy-det", attack, setting)]
            if setting == "white-box":
                # Same weights as the base: no gain, no drop, DES exactly 0.
                assert det_row["status"] == "ok" and det_row["des"] == 0.0
            else:
                assert det_row["status"] == "n/a" and det_row["success_rate"] is None
    # Each number is the one evaluate() saved for that member (what its card would show).
    member = json.loads((out / "toy-noise" / "results.json").read_text())
    entries = {e["name"]: e for e in member["attacks"]}
    assert entries["EOT-PGD-margin"]["wrapper_params"] == {"n": 2}
    assert entries["PGD-CE"]["params"]["eps"] == EPS
    base_rate = d["base"]["attacks"]["PGD-CE"]["success_rate"]
    for (name, attack, setting), r in rows.items():
        if name == "toy-noise":
            assert r["success_rate"] == entries[des.SPEC_NAMES[(attack, setting)]]["success_rate"]
    r = rows[("toy-noise", "PGD", "white-box")]
    assert r["des"] == metrics.defense_efficiency_score(d["base"]["clean_accuracy"], member["clean_accuracy"],
                                                        base_rate, r["success_rate"])
    assert des_report.check_des(out) == []


def test_toy_comparison_resumes_from_saved_results(toy_run, toy_models, test_data, tmp_path, monkeypatch):
    d, out, _ = toy_run
    work = tmp_path / "des-toy"
    shutil.copytree(out, work)
    _cheap(monkeypatch)
    ran = []
    real = evaluate_module._run_spec
    monkeypatch.setattr(evaluate_module, "_run_spec",
                        lambda spec, *a, **k: ran.append(spec.name) or real(spec, *a, **k))
    again = _compare(toy_models, test_data, work)
    assert ran == []  # every member's results.json was reused
    assert again["rows"] == d["rows"] and again["mean_des"] == d["mean_des"]
    # One member lost its results: only its attacks run again.
    (work / "toy-det" / "results.json").unlink()
    _compare(toy_models, test_data, work)
    assert sorted(ran) == sorted(["PGD-CE", "PGD-margin", "EOT-PGD-CE", "EOT-PGD-margin", "FixedRand-PGD-CE",
                                  "FixedRand-PGD-margin"])
    # Other attack parameters, images or models do not reuse stale results.
    base, noisy, det = toy_models
    x, y = test_data[0][:N], test_data[1][:N]
    kw = dict(seed=0, batch_size=128, dataset=None, adaptive_eps=EPS, eot_samples=2)
    only = list(des.SPEC_NAMES.values())
    key = des._run_key(noisy, "toy-noise", x, y, only, **kw)
    assert key == des._run_key(noisy, "toy-noise", x, y, only, **kw)
    assert key != des._run_key(noisy, "toy-noise", x, y, only, **{**kw, "eot_samples": 3})
    assert key != des._run_key(noisy, "toy-noise", x, y, only, **{**kw, "adaptive_eps": 0.2})
    assert key != des._run_key(noisy, "toy-noise", x[::-1], y[::-1], only, **kw)
    assert des._model_fingerprint(noisy) != des._model_fingerprint(base)  # same weights, another architecture


def test_randomized_base_is_refused_before_any_attack(toy_models, test_data, monkeypatch):
    base, noisy, det = toy_models
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: pytest.fail("evaluated a randomized base"))
    with pytest.raises(ValueError, match="random at inference.*noise"):
        des.des_compare({"adv-train": [(det, "toy")]}, base=noisy, data=test_data, n=10, eps=EPS, eot_samples=2,
                        attacks=("PGD",), settings=("white-box",), progress=False, masking_subset=5)


# ----------------------------------------------------------------- CLI (thin over des_compare)
def test_cli_des_parses_members_and_family_file(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(members, **kw):
        seen.update(members=members, **kw)
        return {"base": {"name": "b", "clean_accuracy": 0.99}, "inputs": {"n": kw["n"]},
                "mean_des": [{"family": "HRS", "attack": "PGD", "setting": "eot", "mean_des": 35.4}]}

    monkeypatch.setattr(des, "des_compare", fake)
    monkeypatch.setattr(des_report, "write_des", lambda d, out: seen.update(written=out))
    fam = tmp_path / "members.json"
    fam.write_text(json.dumps({"SAP": [["cwcnn-sap-mnist", 1]], "dropout": [{"name": "d", "strength": 0.1}]}))
    rc = cli.main(["des", "--base", "cwcnn-mnist", "--family-file", str(fam), "--member", "HRS=hrs10x10-mnist:10x10",
                   "--member", "HRS=hrs20x20-mnist", "--n", "40", "--eps", "8/255", "--settings", "white-box,eot",
                   "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert seen["members"] == {"SAP": [["cwcnn-sap-mnist", 1]], "dropout": [{"name": "d", "strength": 0.1}],
                               "HRS": [("hrs10x10-mnist", "10x10"), ("hrs20x20-mnist", None)]}
    assert seen["base"] == "cwcnn-mnist" and seen["n"] == 40 and seen["eps"] == pytest.approx(8 / 255)
    assert seen["settings"] == ["white-box", "eot"] and seen["eta"] == 0.002 and seen["eot_samples"] == 10
    assert seen["command"].startswith("hardened des --base cwcnn-mnist")
    assert "mean DES 35.40" in capsys.readouterr().out
    assert seen["written"] == str(tmp_path / "o") and seen["load"] is from_pretrained


def test_cli_des_reports_unknown_members(capsys):
    assert cli.main(["des", "--base", "cnn7-mnist", "--member", "HRS=no-such-model:10x10"]) == cli.EXIT_ERROR
    assert "no-such-model" in capsys.readouterr().err
    assert cli.main(["des", "--base", "cnn7-mnist"]) == cli.EXIT_ERROR
    assert "--member" in capsys.readouterr().err


# ----------------------------------------------------------------- released comparisons
def _released():
    folders = des_report.des_folders()
    if not folders:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no model_cards/des-*/des.json yet"), id="none")]
    return [pytest.param(f, id=f.name) for f in folders]


@pytest.mark.parametrize("folder", _released())
def test_released_des_table_regenerates_from_saved_results(folder):
    diff = des_report.check_des(folder)
    assert not diff, (f"{folder}: des.json / des.md differ from what the saved results give; rerun "
                      "`hardened des` (it reuses the saved evaluations):\n" + "\n".join(diff[:80]))


def test_eval_package_exports():
    from hardened import evaluation

    assert evaluation.des_compare is des.des_compare
    assert np.isclose(metrics.DES_ETA, 0.002)
