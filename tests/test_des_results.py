"""DES from saved adaptive-suite results (hardened.evaluation.des_results): no attack rerun, like with like only."""

import copy
import json

import pytest

from hardened import cli
from hardened.evaluation import metrics
from hardened.evaluation.des_results import des_from_results
from hardened.reporting import des_report

PARAMS = {"eps": 0.3, "steps": 100, "norm": "linf", "loss": "ce", "random_start": True, "restarts": 1, "seed": 0}


def _row(name, rate, n=400, attack="apgd", loss="ce", wrapper=None, status="ok"):
    params = dict(PARAMS, loss=loss)
    wrapper_params = {}
    if wrapper == "eot":
        params["eot_samples"] = 10
        wrapper_params = {"n": 10}
    return {"name": name, "attack": attack, "params": params, "eps": 0.3, "wrapper": wrapper,
            "wrapper_params": wrapper_params, "status": status, "success_rate": rate, "n_attacked": n,
            "n_success": None if rate is None else round(rate * n)}


def _results(rows, clean, randomized):
    return {"dataset": "mnist", "data_source": "hardened.data.load_dataset('mnist', split='test')[:500]",
            "n": 500, "seed": 0, "batch_size": 128, "backend": "tensorflow", "randomized": randomized,
            "clean_accuracy": clean, "attacks": rows, "versions": {"keras": "3"}}


BASE = _results([_row("PGD-CE", 1.0), _row("PGD-margin", 1.0, loss="margin"),
                 _row("EOT-PGD-CE", None, status="skipped")], 0.99, False)
HRS = _results([_row("PGD-CE", 0.6), _row("PGD-margin", 0.7, loss="margin"),
                _row("EOT-PGD-CE", 0.9, attack="pgd", wrapper="eot"),
                _row("EOT-PGD-margin", 0.95, attack="pgd", loss="margin", wrapper="eot"),
                _row("FixedRand-PGD-CE", 0.8, attack="pgd", wrapper="fixed_randomness"),
                _row("FixedRand-PGD-margin", 0.85, attack="pgd", loss="margin", wrapper="fixed_randomness")],
               0.985, True)
AT = _results([_row("PGD-CE", 0.1), _row("PGD-margin", 0.12, loss="margin")], 0.98, False)


def _reader(table):
    calls = []

    def read(name):
        calls.append(name)
        return copy.deepcopy(table[name]), f"cards/{name}/results_adaptive.json"

    return read, calls


def test_des_from_results_quotes_the_cards_numbers():
    read, calls = _reader({"base": BASE, "hrs": HRS, "at": AT})
    des = des_from_results({"HRS": [("hrs", "10x10")], "adv-train": [("at", 0.3)]}, base="base", results_for=read)
    rows = {(r["member"], r["attack"], r["setting"]): r for r in des["rows"]}
    eot = rows[("hrs", "PGD", "eot")]
    assert eot["success_rate"] == 0.9 and eot["defense_gain"] == pytest.approx(0.1)
    assert eot["des"] == pytest.approx(metrics.defense_efficiency_score(0.99, 0.985, 1.0, 0.9))
    assert rows[("at", "PGD", "eot")]["status"] == "n/a"
    assert des["inputs"]["from_results"]["hrs"] == "cards/hrs/results_adaptive.json"
    assert des["inputs"]["eot_samples"] == 10
    assert "PGD/eot: pgd, 100 steps, EOT 10" in des["inputs"]["attack_text"]
    assert "PGD/white-box: apgd, 100 steps" in des_report.render_des_table(des)
    assert sorted(set(calls)) == ["at", "base", "hrs"] and len(calls) == 3  # each file read once


def test_des_from_results_refuses_what_does_not_compare():
    older = copy.deepcopy(HRS)
    older["attacks"][0]["attack"] = "pgd"  # evaluated before the suite's PGD took APGD's schedule
    read, _ = _reader({"base": BASE, "hrs": older})
    with pytest.raises(ValueError, match="re-evaluate the older"):
        des_from_results({"HRS": [("hrs", "10x10")]}, base="base", results_for=read)
    second = copy.deepcopy(HRS)
    second["attacks"][2]["params"]["steps"] = 40  # another member's EOT row ran another PGD
    read, _ = _reader({"base": BASE, "hrs": HRS, "hrs2": second})
    with pytest.raises(ValueError, match="member 'hrs'"):
        des_from_results({"HRS": [("hrs", "10x10"), ("hrs2", "20x20")]}, base="base", results_for=read)
    other = copy.deepcopy(HRS)
    other["n"] = 100
    read, _ = _reader({"base": BASE, "hrs": other})
    with pytest.raises(ValueError, match="same images"):
        des_from_results({"HRS": [("hrs", "10x10")]}, base="base", results_for=read)
    missing = copy.deepcopy(HRS)
    missing["attacks"] = missing["attacks"][:2]
    read, _ = _reader({"base": BASE, "hrs": missing})
    with pytest.raises(ValueError, match="EOT-PGD-CE"):
        des_from_results({"HRS": [("hrs", "10x10")]}, base="base", results_for=read)
    read, _ = _reader({"base": HRS, "hrs": HRS})
    with pytest.raises(ValueError, match="randomized"):
        des_from_results({"HRS": [("hrs", "10x10")]}, base="base", results_for=read)


def test_cli_des_from_cards_runs_no_attack(tmp_path, monkeypatch, capsys):
    import hardened.evaluation.des as des_module

    monkeypatch.setattr(des_module, "des_compare", lambda *a, **k: pytest.fail("no attack may run"))
    for name, results in (("cwcnn-mnist", BASE), ("hrs10x10-mnist", HRS)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results_adaptive.json").write_text(json.dumps(results))
    out = tmp_path / "des"
    code = cli.main(["des", "--base", "cwcnn-mnist", "--member", "HRS=hrs-mnist:10x10", "--from-cards",
                     str(tmp_path), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "des.json").read_text())
    assert saved["inputs"]["from_results"]["hrs-mnist"].endswith("hrs10x10-mnist/results_adaptive.json")
    assert (out / "des.md").is_file() and (out / "des.png").is_file()
    des_report.check_des(out)
