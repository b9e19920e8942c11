"""The seed papers' reported numbers that the cards and the leaderboard set beside ours.

Citations typed once with their source, never our measurements: seed 000's
Tables I-III (`PAPER_RESULTS`) and the numbers of the paper suites of
`hardened.evaluation.suites` (`PAPER_SUITE_RESULTS`).
"""

import json
from pathlib import Path

from hardened.reporting.defenses import DATASETS, _dataset_key, defense_key

_DATA = Path(__file__).resolve().parent / "data"


def _read_tsv(name):
    """``(header, rows)`` of a tab-separated data file."""
    lines = (_DATA / name).read_text(encoding="utf-8").strip().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


_PAPERS = json.loads((_DATA / "papers.json").read_text(encoding="utf-8"))
#: Seed 000 (Liu & Wen, "Model Compression Hardens Deep Neural Networks"), copied verbatim into data files:
#: Table I clean accuracy (%), Table II white-box success rate (%) with AVG and DeepFool rho, Table III
#: black-box success rate (%).
_T1_HEAD, _T1_ROWS = _read_tsv("seed000_table1.tsv")
_T2_HEAD, _T2_ROWS = _read_tsv("seed000_table2.tsv")
_T3_HEAD, _T3_ROWS = _read_tsv("seed000_table3.tsv")
_TABLE1_KINDS = tuple(_T1_HEAD[1:])
_TABLE2_ATTACKS = tuple(_T2_HEAD[2:-2])
_TABLE3_ATTACKS = tuple(_T3_HEAD[2:])
#: Seed 000's defense parameters and models (Section V-A, Table II).
_SEED000_SETUP = _PAPERS["seed000_setup"]


def _build_paper_results():
    clean = {}
    for dataset, *values in _T1_ROWS:
        clean.update({(dataset, kind): float(v) for kind, v in zip(_TABLE1_KINDS, values)})
    black = {(d, k): [float(v) for v in values] for d, k, *values in _T3_ROWS}
    out = {}
    for dataset, kind, *cells in _T2_ROWS:
        values = [float(v) for v in cells]
        setup = _SEED000_SETUP[dataset]
        label = " + ".join([setup["hash"] if k == "hash" else f"GI{k[-1]}({setup['gi_eps'][k]:g})"
                            for k in kind.split("-")]) if kind != "base" else "original DNN"
        rates = dict(zip(_TABLE2_ATTACKS, values[:8]))
        rates.update(dict(zip(_TABLE3_ATTACKS, black.get((dataset, kind), []))))
        name = DATASETS[dataset][0]
        out[(dataset, kind)] = {
            "source": f"seed 000 (Liu & Wen, 'Model Compression Hardens Deep Neural Networks') Tables I-III, "
                      f"{name} {label}",
            "model": setup["model"],
            "protocol": "The paper attacked its full test set (FGSM, BIM, MIM), the first 100 correct images x 9 "
                        "targets (JSMA, C&W, EAD, Sub-CW, ZOO-targeted) and 1000 images (BPDA, ZOO-untargeted); "
                        "see the images column for ours",
            "rates": rates,
            "average": values[8],
            "average_over": list(_TABLE2_ATTACKS),
            "rho": values[9],
            "clean_accuracy": clean[(dataset, kind)],
            "eps": {k: setup["gi_eps"][k] for k in kind.split("-") if k in setup["gi_eps"]},
        }
    for row in _PAPERS["seed000_baselines"]["rows"]:
        setup = _SEED000_SETUP[row["dataset"]]
        out[(row["dataset"], row["defense"])] = {
            "source": f"seed 000 (Liu & Wen, 'Model Compression Hardens Deep Neural Networks') Table {row['table']}, "
                      f"{DATASETS[row['dataset']][0]} {row['label']}",
            "model": setup["model"],
            "protocol": "The paper's protocol as in its Table II (FGSM on the full test set, JSMA-Z and C&W on the "
                        "first 100 correct images x 9 targets, BPDA on 1000 images); it reports no clean accuracy "
                        "for these rows",
            "rates": dict(row["rates"]),
        }
    return out


#: The zoo architectures whose cards quote seed 000's tables: its 7-layer MNIST CNN and its VGG-19 (``fastcnn``
#: stands in for VGG-19 on CIFAR-10 until the VGG-19 release).
SEED000_ARCHS = ("cnn7", "fastcnn", "vgg19")

#: Seed-000 reference numbers keyed by ``(dataset, defense)``, e.g. ``("cifar10", "hash-gi3")``:
#: ``{"source", "model", "protocol", "rates": {attack name: %}, "average": %, "average_over", "rho",
#: "clean_accuracy": %, "eps": {gi kind: ε}}``. Citations of the paper, not our measurements.
PAPER_RESULTS = _build_paper_results()


def paper_reference(dataset, defense):
    """The seed-paper reference row for a dataset and defense key, or ``None``.

    Args:
        dataset: ``"mnist"`` or ``"cifar10"`` (aliases accepted).
        defense: A defense key (``"hash-gi3"``, ``"gi2"``, ``"base"``) or a list of kinds.

    Returns:
        A copy of the `PAPER_RESULTS` entry, or ``None`` when the paper has no such row.
    """
    key = defense if isinstance(defense, str) else defense_key(defense)
    row = PAPER_RESULTS.get((_dataset_key(dataset), key))
    return json.loads(json.dumps(row)) if row else None


# --------------------------------------------------------------------------- paper suites (seeds 002, 003)
def _build_paper_suites():
    out = {}
    for suite, ref in _PAPERS["paper_suites"].items():
        rows = {(r["dataset"], tuple(r["kinds"])): {k: v for k, v in r.items() if k not in ("dataset", "kinds")}
                for r in ref["rows"]}
        out[suite] = {**{k: v for k, v in ref.items() if k != "rows"}, "rows": rows}
    return out


#: Reference numbers of the paper suites of `hardened.evaluation.suites` (``prune-la``, ``defendpp``), only
#: those quoted in the project's paper summary (``data/papers.json``). ``rows`` are keyed by
#: ``(dataset, defense kinds)``; a value is a number (%) or a text cell. ``metric`` is what the paper
#: reports: attack success rate (seed 002) or accuracy under attack (seed 003).
PAPER_SUITE_RESULTS = _build_paper_suites()


def paper_suite_rows(suite, dataset, kinds):
    """The paper rows a card shows in a paper suite's section: its own defense's, then the undefended one's.

    Args:
        suite: A key of `PAPER_SUITE_RESULTS` (``"prune-la"``, ``"defendpp"``).
        dataset: ``"mnist"`` or ``"cifar10"`` (aliases accepted).
        kinds: The model's defense kinds (``["prune", "la"]``, ``["base"]``).

    Returns:
        A list of copies of the matching rows (0, 1 or 2), each with its ``label``.
    """
    table = PAPER_SUITE_RESULTS.get(suite, {}).get("rows", {})
    dataset = _dataset_key(dataset)
    keys = [tuple(sorted(kinds or ["base"]))]
    if keys[0] != ("base",):
        keys.append(("base",))
    return [json.loads(json.dumps(table[(dataset, k)])) for k in keys if (dataset, k) in table]
