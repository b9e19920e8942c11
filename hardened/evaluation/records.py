"""Results files as typed records: the one place that reads, validates and upgrades what `evaluate` wrote.

A results file (``results*.json``) is a JSON object with a list ``attacks`` of rows, one per attack
run (or skipped). Readers (cards, leaderboard, DES report, a resumed evaluation) go through
`read_results` / `upgrade_results`, so that

* a malformed file fails with the file's name and what is wrong, in one place, and
* files written before a rename read as if written today: the suite names of issue 20
  (``seed`` -> ``hash-gi``, ``seed002`` -> ``prune-la``, ``seed003`` -> ``defendpp``) are mapped on
  read, never by editing the stored file, whose bytes stay what the pipeline wrote.

`AttackRow` is the typed view of one row, for code that wants attributes; the stored dicts keep
every field `evaluate` writes (the renderers read many optional ones).
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hardened.evaluation.suites import canonical_suite

#: Fields every attack row has, whatever its status.
ROW_REQUIRED = ("name", "status")


@dataclass(frozen=True)
class AttackRow:
    """One attack of a results file.

    Attributes:
        name: The spec's display name (``"PGD-CE"``, ``"JSMA-F"``).
        status: ``"ok"``, ``"skipped"`` or ``"error"``.
        suite: The suite it belongs to (current name).
        attack: The attack's registry name (``"pgd"``), if recorded.
        threat: ``"linf:0.3:untargeted"``-style key, if the attack has one.
        metric: ``"success_rate"`` or another metric name.
        n_attacked: Images (or image x target pairs) attacked.
        n_success: Of those, the ones the attack fooled.
        success_rate: ``n_success / n_attacked`` as stored, or ``None``.
        extra: Every other stored field.
    """

    name: str
    status: str
    suite: Optional[str] = None
    attack: Optional[str] = None
    threat: Optional[str] = None
    metric: Optional[str] = None
    n_attacked: int = 0
    n_success: int = 0
    success_rate: Optional[float] = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, row, where="results"):
        """Validate and type one stored row (suite names upgraded).

        Raises:
            ValueError: the row is not an object, lacks a required field, or its counts are inconsistent.
        """
        if not isinstance(row, dict):
            raise ValueError(f"{where}: an attack row must be a JSON object, found {type(row).__name__}.")
        missing = [k for k in ROW_REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{where}: attack row {row.get('name', '?')!r} lacks {', '.join(missing)}.")
        row = upgrade_row(row)
        n_attacked, n_success = int(row.get("n_attacked") or 0), int(row.get("n_success") or 0)
        if n_success < 0 or (row["status"] == "ok" and n_success > n_attacked):
            raise ValueError(f"{where}: attack row {row['name']!r} has n_success {n_success} > n_attacked "
                             f"{n_attacked}.")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(name=str(row["name"]), status=str(row["status"]), suite=row.get("suite"),
                   attack=row.get("attack"), threat=row.get("threat"), metric=row.get("metric"),
                   n_attacked=n_attacked, n_success=n_success, success_rate=row.get("success_rate"),
                   extra={k: v for k, v in row.items() if k not in known})


def upgrade_row(row):
    """A copy of one stored attack row with today's names (the suite of issue 20's rename)."""
    row = dict(row)
    if "suite" in row:
        row["suite"] = canonical_suite(row["suite"])
    return row


def upgrade_results(data):
    """A copy of a results object (or an evaluation's partial state) with today's names.

    Accepts both stored shapes: ``attacks`` as a list of rows (``results*.json``) or as a dict of rows
    keyed by spec name (``results.partial.json``).
    """
    data = copy.deepcopy(data)
    if "suite" in data:
        data["suite"] = canonical_suite(data["suite"])
    attacks = data.get("attacks")
    if isinstance(attacks, list):
        data["attacks"] = [upgrade_row(r) if isinstance(r, dict) else r for r in attacks]
    elif isinstance(attacks, dict):
        data["attacks"] = {k: upgrade_row(r) if isinstance(r, dict) else r for k, r in attacks.items()}
    return data


def validate_results(data, where="results"):
    """Check a results object; return it upgraded (a copy). Raises ValueError naming ``where`` if malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("attacks"), list):
        raise ValueError(f"{where} is not a hardened.evaluate results file (no 'attacks' list).")
    for row in data["attacks"]:
        AttackRow.from_dict(row, where)
    return upgrade_results(data)


def read_results(path):
    """Read, validate and upgrade one ``results*.json`` file.

    Raises:
        ValueError: not valid JSON, or not a results file (`validate_results`).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); regenerate it with hardened.evaluate instead of "
                         "editing it.") from None
    return validate_results(data, str(path))


def attack_rows(results):
    """The typed `AttackRow` of every row of a results object."""
    return [AttackRow.from_dict(r) for r in results.get("attacks", [])]
