"""Rows of earlier results that a new evaluation may take instead of running them (`evaluate`'s ``reuse``).

A row is taken when the earlier run had the same identity (checkpoint, model name, images as ``data_source``
and n, seed, batch size, backend, settings family, transfer source) and the row the spec would write has the
same name, attack, resolved parameters, norm, ε, wrapper and image cap. The parameters are compared after
resolution (`_run.attack_params`), because rows store them so: a spec changed since (e.g. PGD's step schedule)
never matches.
"""

import json

from hardened.evaluation import _run

# A spec's fields that decide its row besides the model and images; `params` and `skip_reason` are compared too,
# resolved here (rows store resolved parameters) and as written in evaluate's own resume fingerprint.
ROW_FIELDS = ("name", "attack", "targeted", "norm", "eps", "black_box", "wrapper", "wrapper_params", "max_images")


def _normal(obj):
    return json.loads(json.dumps(_run._jsonable(obj), sort_keys=True, default=str))


def reusable_rows(reuse, identity):
    """``{name: (fingerprint, row)}`` of the ok rows of the results in ``reuse`` run with ``identity``."""
    out = {}
    for results in reuse or ():
        if any(_normal(results.get(k)) != _normal(v) for k, v in identity.items()):
            continue
        for row in results.get("attacks", []):
            if row.get("status") == "ok" and row.get("name") not in out:
                fields = {k: row.get(k) for k in ROW_FIELDS}
                fields.update(params=row.get("params"), skip_reason=None)
                if row.get("transfer_source"):
                    fields["transfer"] = True
                out[row["name"]] = (_normal(fields), row)
    return out


def row_fingerprint_of(spec, seed):
    """The fingerprint `reusable_rows` computes from the row ``spec`` would write (``None``: not buildable)."""
    fields = {k: getattr(spec, k) for k in ROW_FIELDS}
    try:
        fields["params"] = _run.attack_params(_run.make_attack(spec, seed), spec.params)
    except Exception:  # noqa: BLE001  (an attack that cannot be built is run, and fails, as usual)
        return None
    fields["skip_reason"] = None
    if spec.transfer:
        fields["transfer"] = True
    return _normal(fields)
