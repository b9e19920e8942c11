"""How a card describes one attack row or run: parameters, images, distortion, notes, the command."""

import shlex

from hardened.reporting.formatting import _NORMS, format_rate


def _versions_text(versions):
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "not recorded"


def _eval_command(name, r):
    parts = [f"KERAS_BACKEND={r.get('backend')}", "hardened", "evaluate", name, "--suite", str(r.get("suite")),
             "--n", str(r.get("n_requested") or r.get("n")), "--seed", str(r.get("seed")),
             "--batch-size", str(r.get("batch_size"))]
    if r.get("dataset"):
        parts += ["--dataset", str(r["dataset"])]
    if (r.get("transfer_source") or {}).get("model_name"):
        parts += ["--transfer-from", str(r["transfer_source"]["model_name"])]
    if (r.get("budget") or {}).get("quick"):
        parts.append("--quick")
    if r.get("only"):
        only = r["only"] if isinstance(r["only"], list) else [r["only"]]
        parts += ["--only", ",".join(map(str, only))]
    parts += ["--out", f"model_cards/{name}"]
    return " ".join(p if i == 0 else shlex.quote(p) for i, p in enumerate(parts)) + \
        "   # equivalent command, rebuilt from results.json"


_PARAM_FORMATS = (
    ("loss", lambda v: f"loss {v}"),
    ("steps", lambda v: f"{v} steps"),
    ("step_size", lambda v: f"step {v:.3g}"),
    ("restarts", lambda v: f"{v} restart{'s' if v != 1 else ''}"),
    ("random_start", lambda v: "random start" if v else "no random start"),
    ("decay", lambda v: f"decay {v:g}"),
    ("binary_search_steps", lambda v: f"{v} binary-search steps"),
    ("initial_const", lambda v: f"c₀ = {v:g}"),
    ("confidence", lambda v: f"κ = {v:g}"),
    ("lr", lambda v: f"lr {v:g}"),
    ("beta", lambda v: f"β = {v:g}"),
    ("decision_rule", lambda v: f"rule {v}"),
    ("variant", lambda v: f"variant {v}"),
    ("theta", lambda v: f"θ = {v:g}"),
    ("gamma", lambda v: f"γ = {v:g}"),
    ("overshoot", lambda v: f"overshoot {v:g}"),
    ("candidates", lambda v: f"{v} candidates"),
    ("queries", lambda v: f"{v} queries"),
    ("p_init", lambda v: f"p_init {v:g}"),
    ("coords", lambda v: f"{v} coords/iter"),
    ("craft", lambda v: f"crafts {v}"),
    ("n_seed", lambda v: f"{v} seed images"),
    ("rounds", lambda v: f"{v} rounds"),
    ("arch", lambda v: f"substitute {v}"),
    ("version", lambda v: f"version {v}"),
)


def params_summary(entry):
    """A one-line summary of an attack's main hyper-parameters (steps, restarts, c, binary search, ...)."""
    params = entry.get("params") or {}
    bits = []
    for key, fmt in _PARAM_FORMATS:
        v = params.get(key)
        if v is None:
            continue
        try:
            bits.append(fmt(v))
        except (TypeError, ValueError):
            bits.append(f"{key} {v}")
    wrapper = entry.get("wrapper")
    wp = entry.get("wrapper_params") or {}
    if wrapper == "eot":
        bits.append(f"EOT n = {wp.get('n', '?')}")
    elif wrapper == "bpda":
        what = [w for w in ("softmax → sigmoid" if wp.get("softmax_to_sigmoid") else None,
                             f"identity for {', '.join(wp['replace'])}" if wp.get("replace") else None) if w]
        bits.append("BPDA" + (f" ({'; '.join(what)})" if what else ""))
    elif wrapper:
        bits.append(wrapper.replace("_", " "))
    return ", ".join(bits) or "–"


def _images_text(e):
    n_att, n_img = e.get("n_attacked") or 0, e.get("n_images") or 0
    if e.get("status") != "ok":
        return "–"
    if e.get("targeted") and n_img:
        per = n_att // n_img if n_img else 0
        return f"{n_att} pairs ({n_img} images × {per} targets)"
    return f"{n_att} correct of {n_img}"


def _distortion_text(e):
    if e.get("status") != "ok":
        return "–"
    norm = e.get("norm")
    order = {"l0": ("l0", "l2"), "linf": ("linf", "l2")}.get(norm, ("l2", "linf"))
    bits = [f"{_NORMS[k]} {e[f'mean_{k}']:.3g}" for k in order if e.get(f"mean_{k}") is not None]
    return " · ".join(bits) or "–"


def _is_transfer(e):
    """Whether a results entry is a grey-box transfer attack (evaluate records its source, or None, then)."""
    return "transfer_source" in e


def _paper_value(v):
    if v is None:
        return "–"
    return f"{v:g} %" if isinstance(v, (int, float)) else str(v)


def _notes_text(e):
    notes = []
    if e.get("transfer_source") and e.get("status") == "ok":
        notes.append(f"crafted on `{e['transfer_source']}` ({format_rate(e.get('source_success_rate'))} success "
                     "there)")
    if e.get("quick_capped") and e.get("status") == "ok":
        if e.get("paper_images"):
            notes.append(f"fewer images than the paper ({e.get('n_images')} vs {e['paper_images']}; quick budget)")
        else:
            notes.append(f"fewer images than the full suite (capped at {e.get('max_images')}; quick budget)")
    if e.get("metric") == "deepfool_rho" and e.get("rho") is not None:
        notes.append(f"ρ = {e['rho']:.4g}")
    if e.get("note"):
        notes.append(str(e["note"]))
    return "; ".join(notes)
