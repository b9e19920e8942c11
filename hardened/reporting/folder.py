"""A card folder on disk: its file names and reading what a report is rendered from.

Folder layout (what a release writes)::

    model_cards/<name>/
        README.md            the card (hardened.reporting.cards; never edited by hand)
        results*.json        hardened.evaluate outputs (results.json, results_adaptive.json,
                             results_prune-la.json, ...: every one is rendered)
        accuracy.json        full-test clean accuracy (hardened accuracy NAME --out DIR)
        *.png                plots written by evaluate or the recipe (embedded if present)
        config.json, model.safetensors, metadata.json    a checkpoint release
        view.json            a view release instead: {"base", "transform", "eps", "seed"}
"""

import json
from pathlib import Path

from hardened.evaluation.records import read_results
from hardened.zoo.hub import model_cards_dir

README_NAME = "README.md"
METADATA_NAME = "metadata.json"
VIEW_NAME = "view.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "metadata.json")
RESULTS_GLOB = "results*.json"
#: Full-test clean accuracy written by ``hardened accuracy NAME --out model_cards/NAME``.
ACCURACY_FILE = "accuracy.json"


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); regenerate it (hardened.evaluate / the release "
                         "script) instead of editing it.") from None


def results_files(folder):
    """The ``results*.json`` files of a folder in rendering order: ``results.json`` first, then by name."""
    files = sorted(Path(folder).glob(RESULTS_GLOB), key=lambda p: (p.name != "results.json", p.name))
    return [p for p in files if p.is_file()]


def read_card_inputs(folder):
    """Everything the renderer reads from a card folder.

    Returns:
        ``{"results": [(file name, dict), ...], "metadata": dict | None, "view": dict | None}``.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: a JSON file is not valid JSON or not an object.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Card folder {folder} does not exist.")
    out = {"results": [], "metadata": None, "view": None, "accuracy": None}
    for path in results_files(folder):
        out["results"].append((path.name, read_results(path)))  # validated, old suite names upgraded
    for key, name in (("metadata", METADATA_NAME), ("view", VIEW_NAME), ("accuracy", ACCURACY_FILE)):
        if (folder / name).is_file():
            data = _read_json(folder / name)
            if not isinstance(data, dict):
                raise ValueError(f"{folder / name} must hold a JSON object, found {type(data).__name__}.")
            out[key] = data
    return out


def card_folders(root=None):
    """The card folders under ``root``: sub-folders holding results*.json, metadata.json or view.json.

    Args:
        root: Folder of card folders (default: `hardened.zoo.hub.model_cards_dir`).

    Returns:
        Sorted list of paths (empty when ``root`` does not exist).
    """
    root = default_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (
        results_files(p) or (p / METADATA_NAME).is_file() or (p / VIEW_NAME).is_file()))


def default_root():
    """The bundled model-card folder: ``$HARDENED_MODEL_CARDS`` or ``<repo>/model_cards``."""
    return model_cards_dir()
