"""Seed 004's DES from saved evaluations: the cards' adaptive-suite results instead of new attack runs.

`hardened.evaluation.des.des_compare` evaluates every member itself. The
adaptive suite a card shows already holds the same attacks (PGD-CE / PGD-margin
in the white-box, EOT and fixed-randomness settings, `des.SPEC_NAMES`) on the
same first n test images, so a comparison of released models can read them:
no attack is rerun, and the DES table quotes exactly the numbers of the cards.

It refuses results that would not compare like with like: different images
(``data_source``, ``n``), seed or ε, or a PGD row run with other attack
parameters than the base's white-box row of the same loss (e.g. a card
evaluated before the suite's PGD took APGD's schedule beside one evaluated
after), or an EOT / fixed-randomness row unlike the other members' (the suite
runs fixed-step PGD there; the base, deterministic, is compared in white-box
as `des_compare` does). Such a card must be re-evaluated first.
"""

from hardened._provenance import command_line, git_commit
from hardened.evaluation import metrics
from hardened.evaluation.des import (
    ATTACKS,
    SETTINGS,
    SPEC_NAMES,
    _check_eta,
    build_des,
    member_record,
    normalize_attacks,
    normalize_members,
    normalize_settings,
)

#: Run settings that must agree between the base and every member.
SAME = ("dataset", "data_source", "n", "seed")
#: Attack parameters that may differ between the rows of one loss (EOT adds its gradient samples).
_FREE_PARAMS = {"eot_samples"}


def des_from_results(members, *, base, results_for, attacks=ATTACKS, settings=SETTINGS, eta=metrics.DES_ETA,
                     command=None):
    """Seed 004's DES table from saved `evaluate` results (pure but for ``results_for``).

    Args:
        members: ``{family: [(name, strength), ...]}`` as for `des_compare`.
        base: Name of the unprotected, deterministic base.
        results_for: ``name -> (results dict, where)``: the saved adaptive-suite
            results of a model and where they were read (a path, for des.json).
        attacks, settings, eta: As for `des_compare`.
        command: How the comparison was started (default: this process's command line).

    Returns:
        The des.json dict (`build_des`), its ``inputs`` naming the results read.

    Raises:
        ValueError: a randomized base, results that do not compare (see the module doc),
            or a member without the needed rows.
    """
    _check_eta(eta)
    attacks, settings = normalize_attacks(attacks), normalize_settings(settings)
    cache = {}
    read_once = results_for

    def results_for(name):
        if name not in cache:
            cache[name] = read_once(name)
        return cache[name]

    families = normalize_members(members)
    base_results, base_where = results_for(base)
    if base_results.get("randomized"):
        raise ValueError(f"The base {base!r} is randomized; DES measures gains against the deterministic model the "
                         "defenses start from.")
    reference = {a: _row(base_results, SPEC_NAMES[(a, "white-box")], base, base_where) for a in attacks}
    base_record = member_record(base_results, family=None, name=str(base), strength=None, source=base_where,
                                folder=None)
    # White-box rows must match the base's; an EOT / fixed-randomness row (the suite may run another attack
    # there, e.g. fixed-step PGD beside the white-box APGD) must match the same row of the other members.
    references = {SPEC_NAMES[(a, "white-box")]: (reference[a], f"the base {base!r}") for a in attacks}
    records, read = [], {str(base): base_where}
    for family, entries in families.items():
        for entry in entries:
            name = str(entry["source"])
            results, where = results_for(name)
            _check_comparable(results, base_results, name, base, where)
            wanted = settings if results.get("randomized") else ("white-box",)
            for attack in attacks:
                for setting in wanted:
                    spec = SPEC_NAMES[(attack, setting)]
                    row = _row(results, spec, name, where)
                    if row.get("status") in ("skipped", "error"):
                        continue  # des_rows reports it as such
                    if spec not in references:
                        references[spec] = (row, f"member {name!r}")
                    _check_same_attack(row, *references[spec], name, where)
            records.append(member_record(results, family=family, name=name, strength=entry["strength"],
                                         source=where, folder=None))
            read[name] = where
    commit, dirty = git_commit()
    backends = {name: results_for(name)[0].get("backend") for name in read}
    inputs = {
        "command": command if command is not None else command_line(),
        "commit": commit, "commit_dirty": dirty, "from_results": read,
        **{key: base_results.get(key) for key in SAME},
        "eps": reference[attacks[0]].get("eps"), "norm": "linf", "attacks": list(attacks),
        "settings": list(settings), "eta": float(eta),
        "spec_names": {f"{a}/{s}": SPEC_NAMES[(a, s)] for a in attacks for s in settings},
        "steps": (reference[attacks[0]].get("params") or {}).get("steps"), "eot_samples": _eot_samples([results_for(name)[0] for name in read]),
        "attack_text": "; ".join(f"{k}: {v}" for k, v in _attack_texts(references, attacks, settings).items()),
        "batch_size": base_results.get("batch_size"), "versions": base_results.get("versions"),
        "backend": ", ".join(sorted(set(map(str, backends.values())))), "backends": backends,
        "base": str(base),
        "members": {family: [{"source": str(m["source"]), "strength": m["strength"]} for m in ms]
                    for family, ms in families.items()},
    }
    return build_des(inputs, base_record, records)


def _row(results, spec, name, where):
    for row in results.get("attacks", []):
        if row.get("name") == spec:
            return row
    raise ValueError(f"{where} ({name}) has no {spec!r} row: evaluate it with the adaptive suite first "
                     f"(hardened evaluate {name} --suite adaptive --n {results.get('n')}).")


def _check_comparable(results, base_results, name, base, where):
    for key in SAME:
        if results.get(key) != base_results.get(key):
            raise ValueError(f"{where} ({name}) was evaluated with {key} {results.get(key)!r}, the base {base!r} "
                             f"with {base_results.get(key)!r}: DES compares models on the same images, seed and "
                             "attacks; re-evaluate one of them.")


def _check_same_attack(row, reference, whose, name, where):
    mine, theirs = _attack_of(row), _attack_of(reference)
    if mine != theirs:
        raise ValueError(f"{where} ({name}): its {row.get('name')!r} row ran {mine}, {whose}'s ran {theirs}; "
                         "re-evaluate the older of the two so that both use the suite's current attack.")


def _attack_of(row):
    params = {k: v for k, v in (row.get("params") or {}).items() if k not in _FREE_PARAMS}
    return {"attack": row.get("attack"), "eps": row.get("eps"), "wrapper_params": row.get("wrapper_params") or {},
            **params}


def _attack_texts(references, attacks, settings):
    texts = {}
    for a in attacks:
        for s in settings:
            ref = references.get(SPEC_NAMES[(a, s)])
            if ref is not None:
                p = ref[0].get("params") or {}
                texts[f"{a}/{s}"] = f"{ref[0].get('attack')}, {p.get('steps')} steps" + (
                    f", EOT {ref[0]['wrapper_params']['n']}" if (ref[0].get("wrapper_params") or {}).get("n") else "")
    return texts


def _eot_samples(results_list):
    counts = {(row.get("wrapper_params") or {}).get("n") for res in results_list for row in res.get("attacks", [])
              if row.get("wrapper") == "eot" and row.get("status") == "ok"}
    return None if not counts else counts.pop() if len(counts) == 1 else sorted(counts)
