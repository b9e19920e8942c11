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


#: The only modules that import parts of the package inside functions, and why: the package's entry points load
#: the heavy parts (attacks, tqdm, matplotlib, huggingface_hub) only when a command or attribute needs them, so
#: that ``import hardened`` and ``hardened --help`` stay fast.
LAZY_IMPORTS = {"cli.py", "__init__.py"}


def test_imports_of_the_package_are_at_module_top_except_the_declared_lazy_ones():
    # A function-level import hides a cycle instead of breaking it (issue 20): every module's own imports of
    # hardened modules sit at its top, where the layering test above and a reader see them.
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if str(rel) in LAZY_IMPORTS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                names = ([a.name for a in inner.names] if isinstance(inner, ast.Import) else
                         [inner.module or ""] if isinstance(inner, ast.ImportFrom) and inner.level == 0 else [])
                if isinstance(inner, ast.ImportFrom) and inner.level > 0:
                    names = ["." * inner.level + (inner.module or "")]
                bad += [f"{rel}:{inner.lineno} {n}" for n in names if n.startswith(("hardened", "."))]
    assert not bad, "imports of the package inside functions: " + ", ".join(sorted(set(bad)))
