"""The zoo leaderboard (model_cards/LEADERBOARD.md) is generated from the card folders and must match."""

import json
import shutil

import pytest

from hardened import cli
from hardened.reporting import cards, leaderboard
from hardened.zoo.registry import REGISTRY


def test_leaderboard_matches_the_card_folders():
    if not cards.card_folders():
        pytest.skip("no released model cards")
    diff = leaderboard.check()
    assert not diff, "model_cards/LEADERBOARD.md is out of date; run `hardened leaderboard --write`:\n" + "\n".join(
        diff[:60])


def test_every_released_model_has_a_row_with_its_full_test_accuracy():
    rows = {r["name"]: r for r in leaderboard.collect()}
    released = [name for name in REGISTRY if (cards.default_root() / name).is_dir()]
    assert released and set(released) <= set(rows)
    for name in released:
        accuracy = json.loads((cards.default_root() / name / cards.ACCURACY_FILE).read_text())["accuracy"]
        assert rows[name]["clean"] == pytest.approx(accuracy), name
    text = leaderboard.render()
    for name in released:
        assert f"[{name}]({name}/README.md)" in text


def test_rows_are_sorted_by_worst_case_robust_accuracy(tmp_path):
    # Two copies of a released, evaluated card folder with their numbers changed: the more robust first.
    src = cards.default_root() / "cnn7-mnist"
    for name, n_success in (("cnn7-mnist", 490), ("cnn7-hash-mnist", 10)):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        # Only results.json speaks for the copy: the adaptive suite's worst case would override the edit.
        for extra in dst.glob("results_*.json"):
            extra.unlink()
        results = json.loads((dst / "results.json").read_text())
        worst = results["summary"]["worst_case_by_threat"]["linf:0.3:untargeted"]
        row = next(a for a in results["attacks"] if a["name"] == worst["attack"] and a["threat"] == "linf:0.3:untargeted")
        row["n_success"] = n_success
        worst["robust_accuracy_upper_bound"] = (results["n_correct"] - n_success) / results["n"]
        worst["max_success_rate"] = n_success / results["n_correct"]
        (dst / "results.json").write_text(json.dumps(results))
    text = leaderboard.render(tmp_path)
    assert text.index("[cnn7-hash-mnist]") < text.index("[cnn7-mnist]")
    row = next(r for r in leaderboard.collect(tmp_path) if r["name"] == "cnn7-hash-mnist")
    n_correct = json.loads((tmp_path / "cnn7-hash-mnist" / "results.json").read_text())["n_correct"]
    assert row["linf"]["robust"] == n_correct - 10


def test_cli_prints_writes_and_checks(tmp_path, capsys):
    shutil.copytree(cards.default_root() / "cnn7-mnist", tmp_path / "cnn7-mnist")
    assert cli.main(["leaderboard", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| [cnn7-mnist](cnn7-mnist/README.md) |" in out
    assert cli.main(["leaderboard", "--root", str(tmp_path), "--check"]) == 1  # not written yet
    assert cli.main(["leaderboard", "--root", str(tmp_path), "--write"]) == 0
    capsys.readouterr()
    assert cli.main(["leaderboard", "--root", str(tmp_path), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
