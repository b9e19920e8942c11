"""The package's layering, checked on the source: lower floors never import upper ones.

zoo (checkpoints, registry, Hub) and evaluation (attacks run on a model, results files) sit below
reporting (cards, leaderboard, DES report), which reads what they write. An import inside a function
counts as much as one at the top of a module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hardened"
#: floor -> packages it must not import.
FORBIDDEN = {
    "zoo": ("hardened.evaluation", "hardened.reporting"),
    "evaluation": ("hardened.zoo", "hardened.reporting"),
    "attacks": ("hardened.zoo", "hardened.reporting", "hardened.evaluation"),
    "layers": ("hardened.zoo", "hardened.reporting", "hardened.evaluation", "hardened.attacks"),
    "models": ("hardened.zoo", "hardened.reporting", "hardened.evaluation", "hardened.attacks"),
}


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # from hardened import zoo
                yield node.lineno, f"{node.module}.{alias.name}"


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_module_imports_a_floor_above_it(floor):
    bad = []
    for path in sorted((PACKAGE / floor).rglob("*.py")):
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[floor]):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_library_file_exceeds_700_lines():
    # Short files with one job each: a file that outgrows this mixes jobs (issue 20).
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 700}
    assert not long, long
