"""One name per thing (issue 20): renamed builders and suites keep working with a warning, and results files
written under the old names read as if written today, through the one reader `hardened.evaluation.records`."""

import json
import warnings

import pytest

import hardened.models as models
from hardened.evaluation import records, suites
from hardened.reporting.folder import read_card_inputs, results_files
from hardened.zoo.hub import model_cards_dir

OLD_BUILDERS = {"seed_cnn7": "cnn7", "cw_cnn": "cwcnn"}
OLD_SUITES = {"seed": "hash-gi", "seed002": "prune-la", "seed003": "defendpp"}


@pytest.mark.parametrize("old, new", sorted(OLD_BUILDERS.items()))
def test_old_builder_names_warn_and_build_the_same_network(old, new):
    with pytest.warns(DeprecationWarning, match=f"now called '{new}'"):
        builder = models.get_builder(old)
    assert builder is models.get_builder(new)
    with pytest.warns(DeprecationWarning):
        assert getattr(models, old) is models.BUILDERS[new]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names read from stored metadata: no warning
        assert models.canonical_builder(old) == new and models.canonical_builder(new) == new
    assert old not in models.list_builders()


@pytest.mark.parametrize("old, new", sorted(OLD_SUITES.items()))
def test_old_suite_names_warn_and_give_the_same_attacks_under_the_new_name(old, new):
    with pytest.warns(DeprecationWarning, match=f"now called '{new}'"):
        specs = suites.build_suite(old, dataset="mnist", backend="tensorflow")
    fresh = suites.build_suite(new, dataset="mnist", backend="tensorflow")
    assert [s.name for s in specs] == [s.name for s in fresh]
    assert {s.suite for s in fresh} == {new}
    assert old not in suites.SUITES and new in suites.SUITES


def _old_results():
    return {"suite": "seed002", "n": 3, "attacks": [
        {"name": "FGSM-0.1", "suite": "seed002", "status": "ok", "n_attacked": 3, "n_success": 1,
         "success_rate": 1 / 3, "threat": "linf:0.1:untargeted", "metric": "success_rate"},
        {"name": "Grey-C&W", "suite": "seed002", "status": "skipped", "reason": "no source"}]}


def test_old_results_files_are_read_under_the_new_suite_names_without_touching_the_file(tmp_path):
    path = tmp_path / "results_seed002.json"
    path.write_text(json.dumps(_old_results()))
    before = path.read_bytes()
    data = records.read_results(path)
    assert data["suite"] == "prune-la" and {r["suite"] for r in data["attacks"]} == {"prune-la"}
    assert path.read_bytes() == before
    rows = records.attack_rows(data)
    assert [r.name for r in rows] == ["FGSM-0.1", "Grey-C&W"]
    assert rows[0].n_success == 1 and rows[0].threat == "linf:0.1:untargeted" and rows[1].extra["reason"]
    # The partial state of a resumed evaluation keys its rows by spec name.
    partial = records.upgrade_results({"attacks": {"FGSM-0.1": _old_results()["attacks"][0]}})
    assert partial["attacks"]["FGSM-0.1"]["suite"] == "prune-la"


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("attacks"), "no 'attacks' list"),
    (lambda d: d["attacks"][0].pop("status"), "lacks status"),
    (lambda d: d["attacks"][0].update(n_success=4), "n_success 4 > n_attacked 3"),
])
def test_malformed_results_fail_with_the_file_name_and_what_is_wrong(tmp_path, edit, match):
    data = _old_results()
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as err:
        records.read_results(path)
    assert "results.json" in str(err.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        records.read_results(path)


def test_every_bundled_results_file_validates_and_carries_only_current_suite_names():
    folders = sorted(p.parent for p in model_cards_dir().glob("*/results*.json"))
    assert folders, "no bundled results files found"
    for folder in folders:
        for name, data in read_card_inputs(folder)["results"]:
            names = {r.get("suite") for r in data["attacks"]} | {data.get("suite")}
            assert not names & set(OLD_SUITES), (folder.name, name)
        assert all(not p.name.startswith(("results_seed",)) for p in results_files(folder)), folder
