"""Seed 004's Defense Efficiency Score (DES) comparison of defense families.

    des = des_compare({"HRS": [("hrs10x10-cifar10", "10x10"), ("hrs20x20-cifar10", "20x20")],
                       "dropout": [("cwcnn-dropout0.1-cifar10", 0.1), ("cwcnn-dropout0.3-cifar10", 0.3)],
                       "adv-train": [("cwcnn-advtrain-cifar10", 8 / 255)]},
                      base="cwcnn-cifar10", n=500, out_dir="runs/des-cifar10",
                      load=hardened.from_pretrained, resolve=hardened.zoo.resolve_name)
    hardened.reporting.des_report.write_des(des, "runs/des-cifar10")   # des.md + des.png

Every member (and the base) is evaluated with `hardened.evaluate` (suite
``adaptive``, only the attacks the comparison needs), so a member's numbers are
exactly the ones its card shows for the same n, seed and batch size; each
evaluation is saved in ``out_dir/<member>/results.json`` and reused by a rerun.

Definitions (seed 004, section 4 and footnote 2; all values fractions):

* **defense rate** of a model under attack A = 1 − A's untargeted success rate,
  the success rate being `hardened.evaluation.metrics`' (share of the images
  the model classifies correctly that are misclassified after the attack; for a
  randomized model both predictions are single random draws, as in the card).
* **Δd** (defense gain) = defense rate of the member − defense rate of the
  *base* under the same attack in the white-box setting. The base is the
  unprotected, deterministic model all defenses start from; EOT and fixed
  randomness are the white-box attack on a deterministic model, so its
  white-box rate is the reference of every setting.
* **Δt** (accuracy drop) = clean accuracy of the base − clean accuracy of the
  member, on the same n test images.
* **DES** = Δd / (Δt + η), η = 0.002 (`metrics.defense_efficiency_score`).

Attacks and settings map onto the adaptive suite's specs (`SPEC_NAMES`):
PGD = PGD with cross-entropy, CW-PGD = PGD with the C&W margin loss on the
logits; ``eot`` averages ``eot_samples`` gradients per step (`attacks.eot`);
``fixed`` crafts on the model with its randomness switched off (noise removed,
one fixed HRS path: `attacks.fixed_randomness`) and scores the examples on the
randomized model. Deterministic members get no EOT / fixed rows of their own
("n/a, deterministic"): those would repeat the white-box numbers.

Outputs in ``out_dir``: ``des.json`` (every input and per-member row) and one
folder of `evaluate` output per model. The report (``des.md``, seed 004's
Table 2, and ``des.png``, its Figure 2) is rendered from des.json by
`hardened.reporting.des_report`, whose `check_des` regenerates a saved folder.
"""

import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from hardened._provenance import command_line, git_commit
from hardened.data import canonical_dataset, load_dataset
from hardened.evaluation import metrics, suites
from hardened.layers import randomized_layers

DES_JSON = "des.json"
SCHEMA_VERSION = 1

#: Seed 004's attacks -> loss of the adaptive suite's PGD.
ATTACKS = ("PGD", "CW-PGD")
#: Seed 004's settings, in table order.
SETTINGS = ("white-box", "eot", "fixed")
#: (attack, setting) -> name of the adaptive-suite spec that runs it.
SPEC_NAMES = {
    ("PGD", "white-box"): "PGD-CE", ("PGD", "eot"): "EOT-PGD-CE", ("PGD", "fixed"): "FixedRand-PGD-CE",
    ("CW-PGD", "white-box"): "PGD-margin", ("CW-PGD", "eot"): "EOT-PGD-margin",
    ("CW-PGD", "fixed"): "FixedRand-PGD-margin",
}
SETTING_TITLES = {"white-box": "white-box", "eot": "EOT", "fixed": "fixed randomness"}
NOT_APPLICABLE = "n/a, deterministic"
#: Key written into each member's results.json: what a rerun must match to reuse it.
RUN_KEY = "des_run_key"

_ATTACK_ALIASES = {"pgd": "PGD", "pgd-ce": "PGD", "cw-pgd": "CW-PGD", "cwpgd": "CW-PGD", "pgd-margin": "CW-PGD"}
_SETTING_ALIASES = {"white-box": "white-box", "whitebox": "white-box", "white": "white-box", "eot": "eot",
                    "fixed": "fixed", "fixed-randomness": "fixed", "fixed_randomness": "fixed"}


# ----------------------------------------------------------------- the comparison
def des_compare(members, *, base, data=None, dataset=None, n=500, eps=None, attacks=ATTACKS, settings=SETTINGS,
                eot_samples=suites.EOT_SAMPLES, eta=metrics.DES_ETA, out_dir=None, resume=True, progress=True,
                seed=0, batch_size=128, data_dir=None, masking_subset=None, command=None, load=None, resolve=None):
    """Evaluate every member of every defense family and compute seed 004's DES.

    Args:
        members: ``{family: [(member, strength), ...]}``; a member is a registry
            name or alias, a checkpoint folder, or a `keras.Model` (its
            ``name`` labels it); ``strength`` is the defense's strength factor
            (a number or a label such as ``"10x10"``), only recorded and
            plotted. A bare member (no strength) or ``{"name": ..,
            "strength": ..}`` is accepted too.
        base: The unprotected, deterministic model every member is compared
            with (same kinds as a member).
        data: ``(x, y)`` test images in [0, 1] and labels; default: the test
            split of ``dataset``.
        dataset: Dataset name (attack settings and, without ``data``, the
            images); default: from the base's metadata.
        n: Number of test images (the first n); the same for every model.
        eps: ℓ∞ bound of the attacks; default: the adaptive suite's ε of the
            dataset (MNIST 0.3, CIFAR-10 8/255), i.e. what the cards show.
        attacks: Subset of ``("PGD", "CW-PGD")``.
        settings: Subset of ``("white-box", "eot", "fixed")``.
        eot_samples: Gradient samples per EOT step (seed 004: 10).
        eta: η of DES (seed 004: 0.002); must be > 0.
        out_dir: Folder of ``des.json`` and one
            ``<member>/`` folder of `evaluate` output per model. Without it
            nothing is written and nothing can be resumed.
        resume: Reuse a member's saved ``results.json`` when it was made from
            the same model (config and weights), images, seed, batch size,
            backend and attack parameters; an interrupted member resumes from
            its ``results.partial.json`` (see `evaluate`).
        progress: Progress bars.
        seed: Seed of every evaluation.
        batch_size: Images per forward pass / attack batch.
        data_dir: Where `hardened.data.load_dataset` looks first.
        masking_subset: Images of `evaluate`'s masking checks (default min(n, 100)).
        command: How the comparison was started, for des.json (default:
            the running process's command line).
        load: ``source -> keras.Model`` for members and base given as names
            or folders (``hardened.from_pretrained``); not needed when every
            one is a `keras.Model`. Injected so that evaluation does not depend
            on the zoo (the CLI passes the zoo's loader).
        resolve: ``name -> canonical name`` (``hardened.zoo.resolve_name``):
            checks names up front and evaluates a model listed under two
            aliases once.

    Returns:
        The des.json dict: ``inputs``, ``base``, ``members``, ``rows`` (one
        per member x attack x setting) and ``mean_des`` (per family x attack x
        setting, seed 004's Table 2).

    Raises:
        ValueError: no base, an unknown member name, an empty family, η <= 0,
            an unknown attack or setting, a randomized base, members of
            another dataset than the base, or no data to evaluate on.
    """
    import keras

    evaluate_module = _evaluate_module()

    if base is None:
        raise ValueError("des_compare needs base=: the unprotected (undefended) model the accuracy drop and "
                         "the defense gain are measured against, e.g. base='cwcnn-cifar10'.")
    _check_eta(eta)
    attacks, settings = normalize_attacks(attacks), normalize_settings(settings)
    suites.check_adaptive_overrides(eps, eot_samples)
    families = normalize_members(members)
    _check_source(base, "base", load, resolve)
    for family, ms in families.items():
        for m in ms:
            _check_source(m["source"], f"member of {family!r}", load, resolve)

    # One folder per distinct model: the same model in two families is evaluated once.
    labels = {}
    dirs = {}
    for source in [base] + [m["source"] for ms in families.values() for m in ms]:
        key = _source_id(source, resolve)
        if key not in labels:
            labels[key] = _label(source, resolve)
            dirs[key] = _unique_dir(labels[key], set(dirs.values()))

    base_model = _load(base, load)
    _check_deterministic(base_model, labels[_source_id(base, resolve)])
    dataset_name = dataset if dataset is not None else evaluate_module._metadata_dataset(
        getattr(base_model, "hardened_metadata", None) or {})
    x, y, data_source = _resolve_data(data, dataset_name, n, data_dir)
    family_key, _ = suites.family_for(evaluate_module._known_family(dataset_name), tuple(base_model.input_shape[1:]))
    eps_value = float(eps) if eps is not None else suites.settings(family_key)["adaptive_eps"]

    common = dict(data=(x, y), n=int(n), seed=seed, batch_size=batch_size, dataset=dataset_name, progress=progress,
                  masking_subset=masking_subset, resume=resume, adaptive_eps=eps, eot_samples=eot_samples)
    out = Path(out_dir) if out_dir is not None else None

    base_key = _source_id(base, resolve)
    # The base runs the members' selection too (its EOT / fixed specs are skipped, costing nothing),
    # so a base also listed as a member is evaluated once, into one folder.
    # White-box always runs: it is the base's reference in every setting.
    member_only = [SPEC_NAMES[(a, s)] for a in attacks for s in SETTINGS if s == "white-box" or s in settings]
    base_results = _evaluate_cached(base_model, labels[base_key], out / dirs[base_key] if out else None,
                                    member_only, **common)
    if base_results["randomized"]:  # e.g. random without a randomized layer: two forward passes differed
        _check_deterministic(base_model, labels[base_key], randomized=True)
    base_record = member_record(base_results, family=None, name=labels[base_key], strength=None,
                                source=_source_text(base), folder=dirs[base_key])
    del base_model

    evaluated = {base_key: base_results}
    records = []
    from tqdm.auto import tqdm

    todo = [(family, m) for family, ms in families.items() for m in ms]
    for family, m in tqdm(todo, desc="DES members", disable=not progress):
        key = _source_id(m["source"], resolve)
        if key not in evaluated:
            model = _load(m["source"], load)
            _check_same_dataset(model, dataset_name, labels[key])
            evaluated[key] = _evaluate_cached(model, labels[key], out / dirs[key] if out else None, member_only,
                                              **common)
            del model
        records.append(member_record(evaluated[key], family=family, name=labels[key], strength=m["strength"],
                                     source=_source_text(m["source"]), folder=dirs[key]))

    commit, dirty = git_commit()
    inputs = {
        "command": command if command is not None else command_line(),
        "commit": commit, "commit_dirty": dirty,
        "dataset": dataset_name, "data_source": data_source, "settings_family": family_key,
        "n": int(len(x)), "n_requested": int(n), "eps": eps_value, "norm": "linf", "seed": int(seed),
        "batch_size": int(batch_size), "attacks": list(attacks), "settings": list(settings),
        "eot_samples": int(eot_samples), "eta": float(eta), "steps": suites.ITERATIVE_STEPS,
        "spec_names": {f"{a}/{s}": SPEC_NAMES[(a, s)] for a in attacks for s in settings},
        "backend": keras.backend.backend(), "versions": evaluate_module.package_versions(),
        "base": _source_text(base),
        "members": {family: [{"source": _source_text(m["source"]), "strength": m["strength"]} for m in ms]
                    for family, ms in families.items()},
    }
    des = build_des(inputs, base_record, records)
    if out is not None:
        write_des_json(des, out)
    return des


def build_des(inputs, base_record, member_records):
    """The des.json dict from the inputs and the base / member records (pure).

    Args:
        inputs: The ``inputs`` block (needs ``attacks``, ``settings`` and ``eta``).
        base_record: `member_record` of the base.
        member_records: `member_record` of every member, in table order.

    Returns:
        ``{"schema_version", "inputs", "base", "members", "rows", "mean_des"}``.
    """
    attacks, settings, eta = inputs["attacks"], inputs["settings"], inputs["eta"]
    rows = des_rows(base_record, member_records, attacks, settings, eta)
    return _json_clean({"schema_version": SCHEMA_VERSION, "kind": "des", "inputs": inputs, "base": base_record,
                        "members": list(member_records), "rows": rows,
                        "mean_des": mean_des(rows, [r["family"] for r in member_records], attacks, settings)})


def member_record(results, *, family, name, strength, source, folder):
    """What the DES table needs from one model's `evaluate` results (pure).

    Returns:
        ``{"family", "name", "strength", "source", "dir", "randomized",
        "clean_accuracy", "n", "gradient_masking", "masking_flags", "attacks"}``
        with ``attacks`` = ``{spec name: {status, success_rate, n_attacked,
        n_success, reason}}``.
    """
    entries = {}
    for e in results.get("attacks", []):
        entries[e["name"]] = {"status": e.get("status"), "success_rate": e.get("success_rate"),
                              "n_attacked": e.get("n_attacked"), "n_success": e.get("n_success"),
                              "reason": e.get("reason") or e.get("error")}
    flags = [f["name"] for f in results.get("flags", []) if f.get("triggered") and f.get("kind") == "masking"]
    return {"family": family, "name": name, "strength": strength, "source": source, "dir": folder,
            "results": f"{folder}/results.json", "randomized": bool(results.get("randomized")),
            "clean_accuracy": results.get("clean_accuracy"), "n": results.get("n"),
            "gradient_masking": bool(results.get("gradient_masking")), "masking_flags": flags, "attacks": entries}


def des_rows(base_record, member_records, attacks, settings, eta=metrics.DES_ETA):
    """One row per member x attack x setting with Δt, Δd and DES (pure).

    A row's ``status`` is ``"ok"``, ``"n/a"`` (a deterministic member in the EOT
    or fixed setting), ``"missing"`` (the attack was not run) or ``"error"``.
    """
    _check_eta(eta)
    base_rates = {}
    for attack in attacks:
        entry = base_record["attacks"].get(SPEC_NAMES[(attack, "white-box")])
        if not entry or entry["status"] != "ok" or entry["success_rate"] is None:
            raise ValueError(f"The base {base_record['name']!r} has no white-box {attack} result "
                             f"({SPEC_NAMES[(attack, 'white-box')]}: {entry and (entry['status'], entry['reason'])}); "
                             "rerun the comparison.")
        base_rates[attack] = entry["success_rate"]
    base_acc = base_record["clean_accuracy"]
    rows = []
    for rec in member_records:
        drop = None if rec["clean_accuracy"] is None or base_acc is None else base_acc - rec["clean_accuracy"]
        for attack in attacks:
            for setting in settings:
                spec = SPEC_NAMES[(attack, setting)]
                row = {"family": rec["family"], "member": rec["name"], "strength": rec["strength"],
                       "attack": attack, "setting": setting, "spec": spec, "randomized": rec["randomized"],
                       "status": "ok", "note": None, "clean_accuracy": rec["clean_accuracy"],
                       "accuracy_drop": drop, "success_rate": None, "defense_rate": None, "n_attacked": None,
                       "n_success": None, "base_success_rate": base_rates[attack],
                       "base_defense_rate": 1.0 - base_rates[attack], "defense_gain": None, "des": None}
                entry = rec["attacks"].get(spec)
                if setting != "white-box" and not rec["randomized"]:
                    # The wrapper would only repeat the white-box attack on a deterministic model.
                    row.update(status="n/a", note=NOT_APPLICABLE)
                elif entry is None:
                    row.update(status="missing", note=f"{spec} not in the member's results")
                elif entry["status"] != "ok" or entry["success_rate"] is None:
                    row.update(status="error" if entry["status"] == "error" else entry["status"] or "error",
                               note=entry.get("reason") or "no success rate (no correctly classified image?)")
                else:
                    rate = entry["success_rate"]
                    gain = (1.0 - rate) - (1.0 - base_rates[attack])
                    row.update(success_rate=rate, defense_rate=1.0 - rate, n_attacked=entry["n_attacked"],
                               n_success=entry["n_success"], defense_gain=gain,
                               des=metrics.defense_efficiency_score(base_acc, rec["clean_accuracy"],
                                                                    base_rates[attack], rate, eta=eta))
                rows.append(row)
    return rows


def mean_des(rows, families, attacks, settings):
    """Mean DES per family x attack x setting over the members with a number (seed 004's Table 2; pure)."""
    order = list(dict.fromkeys(families))
    out = []
    for family in order:
        for attack in attacks:
            for setting in settings:
                cell = [r for r in rows if r["family"] == family and r["attack"] == attack
                        and r["setting"] == setting]
                values = [r["des"] for r in cell if r["status"] == "ok" and r["des"] is not None
                          and math.isfinite(r["des"])]
                if values:
                    note = None
                elif cell and all(r["status"] == "n/a" for r in cell):
                    note = NOT_APPLICABLE
                else:
                    note = "no result"
                out.append({"family": family, "attack": attack, "setting": setting,
                            "mean_des": float(np.mean(values)) if values else None,
                            "std_des": float(np.std(values)) if values else None,
                            "n_values": len(values), "n_members": len(cell), "note": note})
    return out


# ----------------------------------------------------------------- files
def write_des_json(des, out_dir):
    """Write ``des.json`` into ``out_dir``; returns its path (the report: `hardened.reporting.des_report`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / DES_JSON
    path.write_text(json.dumps(des, indent=2, allow_nan=False) + "\n")
    return path


# ----------------------------------------------------------------- arguments
def normalize_attacks(attacks):
    """Canonical attack names (``PGD``, ``CW-PGD``), in `ATTACKS` order; ValueError on unknown ones."""
    return _normalize(attacks, _ATTACK_ALIASES, ATTACKS, "attack")


def normalize_settings(settings):
    """Canonical setting names (``white-box``, ``eot``, ``fixed``), in `SETTINGS` order."""
    return _normalize(settings, _SETTING_ALIASES, SETTINGS, "setting")


def _normalize(values, aliases, order, what):
    values = [values] if isinstance(values, str) else list(values or ())
    if not values:
        raise ValueError(f"At least one {what} is needed; choose from {list(order)}.")
    picked = set()
    for v in values:
        key = str(v).strip().lower().replace(" ", "-")
        if key not in aliases:
            raise ValueError(f"Unknown {what} {v!r}; expected one of {list(order)}.")
        picked.add(aliases[key])
    return tuple(v for v in order if v in picked)


def normalize_members(members):
    """``{family: [{"source", "strength"}, ...]}`` from the accepted forms of ``members``."""
    if not isinstance(members, dict) or not members:
        raise ValueError("members must be a non-empty dict {family: [(member, strength), ...]}, e.g. "
                         "{'HRS': [('hrs10x10-mnist', '10x10')]}; got "
                         f"{type(members).__name__ if not isinstance(members, dict) else 'an empty dict'}.")
    out = {}
    for family, entries in members.items():
        if not isinstance(family, str) or not family.strip():
            raise ValueError(f"Family labels must be non-empty strings, got {family!r}.")
        if isinstance(entries, (str, os.PathLike)) or not hasattr(entries, "__iter__"):
            entries = [entries]
        items = []
        for entry in entries:
            if isinstance(entry, dict):
                unknown = set(entry) - {"name", "source", "strength"}
                if unknown or not ({"name", "source"} & set(entry)):
                    raise ValueError(f"Member {entry!r} of {family!r}: expected keys 'name' (or 'source') and "
                                     "optionally 'strength'.")
                source, strength = entry.get("source", entry.get("name")), entry.get("strength")
            elif isinstance(entry, (tuple, list)):
                if len(entry) != 2:
                    raise ValueError(f"Member {entry!r} of {family!r}: expected a pair (member, strength).")
                source, strength = entry
            else:
                source, strength = entry, None
            if strength is not None and not isinstance(strength, (str, int, float)):
                raise ValueError(f"Strength of {source!r} in {family!r} must be a number or a label, "
                                 f"got {type(strength).__name__}.")
            items.append({"source": source, "strength": strength})
        if not items:
            raise ValueError(f"Family {family!r} has no members.")
        out[family] = items
    return out


def _check_eta(eta):
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not math.isfinite(eta) \
            or eta <= 0:
        raise ValueError(f"eta must be a positive number (seed 004: 0.002, in accuracy fractions), got {eta!r}: "
                         "with eta <= 0 a member without accuracy drop divides by zero.")


def _check_source(source, role, load, resolve):
    """A model must be a keras.Model, or (with ``load``) a checkpoint folder or a name ``resolve`` accepts."""
    import keras

    if isinstance(source, keras.Model):
        return
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"The DES {role} must be a registry name, a checkpoint folder or a keras.Model, got "
                         f"{type(source).__name__}.")
    if load is None:
        raise ValueError(f"The DES {role} {str(source)!r} is a name or folder: pass load= (and resolve=) to load "
                         "it, e.g. load=hardened.from_pretrained, resolve=hardened.zoo.resolve_name, or pass "
                         "keras.Model objects.")
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir() or resolve is None:
        return
    try:
        resolve(str(source))
    except ValueError as err:
        where = f" (no folder {path} either)" if any(c in str(source) for c in "/\\~.") else ""
        raise ValueError(f"DES {role} {str(source)!r}: {err}{where}") from None


def _source_id(source, resolve=None):
    """A key that is equal for the same model: the object, the resolved folder, or the canonical name."""
    import keras

    if isinstance(source, keras.Model):
        return ("model", id(source))
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return ("dir", str(path.resolve()))
    return ("name", resolve(str(source)) if resolve is not None else str(source))


def _label(source, resolve=None):
    kind, value = _source_id(source, resolve)
    if kind == "model":
        return source.name
    return Path(value).name if kind == "dir" else value


def _source_text(source):
    import keras

    if isinstance(source, keras.Model):
        return f"keras.Model {source.name!r} (in memory)"
    return str(source)


def _unique_dir(label, taken):
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(label)).strip("._") or "model"
    name, i = slug, 2
    while name in taken:
        name, i = f"{slug}-{i}", i + 1
    return name


def _load(source, load):
    import keras

    return source if isinstance(source, keras.Model) else load(source)


def _check_deterministic(model, label, randomized=False):
    """The base must be deterministic: checked on its layers up front, and after its evaluation."""
    layers = [layer.name for layer in randomized_layers(model)]
    if layers or randomized:
        what = f"randomized layers {layers}" if layers else "two forward passes differ"
        raise ValueError(f"The base {label!r} is random at inference ({what}); DES measures gains against the "
                         "unprotected deterministic model the defenses start from (e.g. 'cwcnn-cifar10').")


def _check_same_dataset(model, dataset_name, label):
    evaluate_module = _evaluate_module()

    own = evaluate_module._metadata_dataset(getattr(model, "hardened_metadata", None) or {})
    if own is not None and dataset_name is not None and _norm_ds(own) != _norm_ds(dataset_name):
        raise ValueError(f"Member {label!r} was trained on {own!r} but the comparison is on {dataset_name!r}; "
                         "all members and the base must share the dataset.")


def _norm_ds(name):
    return canonical_dataset(name, strict=False)


def _resolve_data(data, dataset_name, n, data_dir):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    if data is not None:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError("data must be a pair (x, y) of test images in [0, 1] and integer labels.")
        x, y = data
        return np.asarray(x)[:n], np.asarray(y).reshape(-1)[:n], "argument"
    if dataset_name is None:
        raise ValueError("No data to compare on: pass data=(x, y) or dataset='mnist' / 'cifar10' (the base's "
                         "metadata names no dataset).")

    x, y = load_dataset(dataset_name, data_dir=data_dir, split="test")
    return x[:n], np.asarray(y).reshape(-1)[:n], f"hardened.data.load_dataset({dataset_name!r}, split='test')[:{n}]"


# ----------------------------------------------------------------- evaluating with reuse
def _model_fingerprint(model):
    """sha256 of the model's architecture config and weights (the noise view of a base shares its weights)."""
    from keras import ops

    h = hashlib.sha256()
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=str)
    except Exception:  # subclassed models may not serialise: the class still tells them apart
        config = type(model).__qualname__
    h.update(config.encode())
    for w in model.weights:
        arr = np.ascontiguousarray(ops.convert_to_numpy(w))
        h.update(str((w.path, arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _run_key(model, label, x, y, only, *, seed, batch_size, dataset, adaptive_eps, eot_samples, **_):
    import keras

    evaluate_module = _evaluate_module()

    specs = suites.build_suite("adaptive", dataset=evaluate_module._known_family(dataset),
                               input_shape=tuple(model.input_shape[1:]), randomized=True,
                               adaptive_eps=adaptive_eps, eot_samples=eot_samples)
    fingerprints = [evaluate_module._spec_fingerprint(s) for s in suites.select(specs, only)]
    return evaluate_module._json_clean({
        "model": label, "model_sha256": _model_fingerprint(model), "images_sha": evaluate_module._sha(x),
        "labels_sha": evaluate_module._sha(y), "n": int(len(x)), "seed": int(seed), "batch_size": int(batch_size),
        "backend": keras.backend.backend(), "dataset": dataset, "specs": fingerprints})


def _evaluate_cached(model, label, folder, only, *, data, **kwargs):
    """`evaluate` one model (suite adaptive, ``only``), reusing its saved results.json when the run key matches."""
    evaluate_module = _evaluate_module()

    x, y = data
    x, y = x[: kwargs["n"]], y[: kwargs["n"]]
    key = json.loads(json.dumps(_run_key(model, label, x, y, only, **kwargs), sort_keys=True))
    path = folder / evaluate_module.RESULTS_JSON if folder is not None else None
    if kwargs["resume"] and path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if saved.get(RUN_KEY) == key:
            return saved
    results = evaluate_module.evaluate(model, (x, y), suite="adaptive", only=only, out_dir=folder, **kwargs)
    results[RUN_KEY] = key
    if path is not None:
        # results.md / success_vs_eps.png were written by evaluate; only the key is added.
        path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    return results


# ----------------------------------------------------------------- provenance
def _evaluate_module():
    # The package attribute ``hardened.evaluation.evaluate`` is the function, not the module.
    import importlib

    return importlib.import_module("hardened.evaluation.evaluate")


def _json_clean(obj):
    return _evaluate_module()._json_clean(obj)
