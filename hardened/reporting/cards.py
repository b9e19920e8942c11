"""Model cards: ``model_cards/<name>/README.md`` rendered from the folder's results and metadata.

No number in a card is typed by hand. `CardFacts` (`hardened.reporting.card_facts`) reads the folder
(every ``results*.json`` written by `hardened.evaluate`, ``accuracy.json``, ``metadata.json`` or
``view.json``), the registry entry and the seed papers' reference numbers; the Hub metadata is built with
`huggingface_hub.ModelCardData` / `EvalResult` (the model-index the Hub validates) and the body is
`huggingface_hub.ModelCard.from_template` over ``templates/model_card.md``, its sections laid out by
`hardened.reporting.card_sections`. The same inputs always give the same text, so a test can regenerate
every card and fail on any difference (`check_card`).

Command line::

    hardened cards [--check] [--root model_cards] [FOLDER ...]
"""

import argparse
import difflib
import re
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hardened.evaluation.metrics import wilson_interval  # noqa: F401  (re-exported: tests use it from here)
from hardened.reporting.card_facts import _base_repo_id
from hardened.reporting.card_sections import PLOTS, CardSections  # noqa: F401  (re-exported)
from hardened.reporting.defenses import (  # noqa: F401  (re-exported)
    DATASETS, DEFENSE_TEXTS, JPEG_CAVEAT, STANDARD_LINF, defense_key, defense_kinds)
from hardened.reporting.folder import (  # noqa: F401  (re-exported)
    ACCURACY_FILE, CHECKPOINT_FILES, METADATA_NAME, README_NAME, RESULTS_GLOB, VIEW_NAME, card_folders,
    default_root, read_card_inputs, results_files)
from hardened.reporting.formatting import format_eps, format_interval, format_rate  # noqa: F401
from hardened.reporting.papers import (  # noqa: F401  (re-exported)
    _TABLE2_ATTACKS, PAPER_RESULTS, PAPER_SUITE_RESULTS, SEED000_ARCHS, paper_reference, paper_suite_rows)

LICENSE = "apache-2.0"
TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
#: The facts and sections of one rendering (the leaderboard reads its facts too).
_Card = CardSections


def card_data(card):
    """The card's Hub metadata as `huggingface_hub.ModelCardData`: tags, dataset, base model, model-index."""
    ds = DATASETS.get(card.dataset)
    base_repo = _base_repo_id(card.view.get("base")) if card.view and card.use_registry else None
    results = [EvalResult(task_type="image-classification", task_name="Image classification",
                          dataset_type=ds[1] if ds else (card.dataset or "unknown"),
                          dataset_name=card.dataset_display(), dataset_split="test", metric_type=m["type"],
                          metric_value=m["value"], metric_name=m["name"])
               for m in card.model_index_metrics()]
    return ModelCardData(library_name="keras", license=LICENSE, pipeline_tag="image-classification",
                         tags=card.hub_tags(), datasets=[ds[1]] if ds else None, base_model=base_repo,
                         model_name=card.name if results else None, eval_results=results or None)


def _text(lines):
    return "\n".join(lines).strip("\n")


# --------------------------------------------------------------------------- public API
def render_card(folder, registry_entry=None, paper=None):
    """Render the README.md (Hugging Face model card) of a card folder.

    Reads only the folder's ``results*.json``, ``metadata.json`` / ``view.json``,
    the registry entry and the seed-paper references; same inputs, same text.

    Args:
        folder: ``model_cards/<name>/`` (the folder name is the model's canonical name).
        registry_entry: The model's registry entry; ``None`` looks it up in
            `hardened.zoo.registry.REGISTRY` by the folder name; ``False`` uses none.
        paper: Reference numbers ``{"source", "rates": {attack: %}, "average": %, ...}``
            shown beside ours; ``None`` takes the entry's ``paper`` or the
            `PAPER_RESULTS` row of (dataset, defense); ``False`` shows none.

    Returns:
        The card text.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: a JSON file is invalid.
    """
    card = _Card(folder, registry_entry, paper)
    sections = {"header": card.header(), "usage": card.usage(), "defense": card.defense_section(),
                "clean": card.clean_section(), "worst": card.worst_section(), "masking": card.masking_section(),
                "plots": card.plots_section(), "limitations": card.limitations_section(),
                "data": card.data_section(), "reproduction": card.reproduction_section(),
                "files": card.files_section()}
    robustness = [card.seed_section(), *[card.paper_suite_section(s) for s in PAPER_SUITE_RESULTS],
                  card.adaptive_section()]
    text = str(ModelCard.from_template(card_data(card), template_path=str(TEMPLATE), model_name=card.name,
                                       robustness=[_text(s) for s in robustness if s],
                                       **{k: _text(v) for k, v in sections.items()}))
    # Empty sections leave blank lines behind: one blank line between blocks, one newline at the end.
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def write_card(folder, registry_entry=None, paper=None):
    """Render the card of ``folder`` and write it to ``folder/README.md``.

    Args:
        folder: The card folder.
        registry_entry: See `render_card`.
        paper: See `render_card`.

    Returns:
        The written path.
    """
    path = Path(folder) / README_NAME
    path.write_text(render_card(folder, registry_entry, paper), encoding="utf-8")
    return path


def check_card(folder, registry_entry=None, paper=None):
    """Regenerate the card of ``folder`` and compare it with its README.md.

    Args:
        folder: The card folder.
        registry_entry: See `render_card`.
        paper: See `render_card`.

    Returns:
        The unified-diff lines (on disk -> regenerated); empty when the card is up to date.
    """
    path = Path(folder) / README_NAME
    expected = render_card(folder, registry_entry, paper)
    actual = path.read_text(encoding="utf-8") if path.is_file() else ""
    if actual == expected:
        return []
    return list(difflib.unified_diff(actual.splitlines(), expected.splitlines(),
                                     fromfile=f"{path} (on disk{'' if path.is_file() else ': missing'})",
                                     tofile=f"{path} (regenerated)", lineterm=""))


def render_all(root=None):
    """Write the card of every folder under ``root`` (default: `default_root`).

    Returns:
        The written README paths.
    """
    return [write_card(folder) for folder in card_folders(root)]


def main(argv=None):
    """``python -m hardened.reporting.cards [--check] [--root DIR] [FOLDER ...]``.

    Writes (or with ``--check`` compares) the cards of the given folders,
    default: every card folder under the root. Returns the exit status: 0, or 1
    when ``--check`` found a difference (the diff is printed) or a folder failed.
    """
    parser = argparse.ArgumentParser(prog="python -m hardened.reporting.cards",
                                     description="Render model cards (README.md) from results*.json and metadata.")
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="card folders (default: all under --root)")
    parser.add_argument("--root", default=None, help="folder of card folders (default: <repo>/model_cards)")
    parser.add_argument("--check", action="store_true", help="compare with README.md instead of writing; exit 1 "
                                                             "on any difference")
    args = parser.parse_args(argv)
    folders = [Path(f) for f in args.folders] or card_folders(args.root)
    if not folders:
        print(f"No card folders under {args.root or default_root()}.")
        return 0
    status = 0
    for folder in folders:
        try:
            if args.check:
                diff = check_card(folder)
                if diff:
                    status = 1
                    print(f"{folder}: card differs from its results/metadata:")
                    print("\n".join(diff))
                else:
                    print(f"{folder}: up to date")
            else:
                print(f"wrote {write_card(folder)}")
        except (FileNotFoundError, ValueError) as err:
            status = 1
            print(f"{folder}: {err}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
