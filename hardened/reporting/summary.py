"""The plain-text summary `hardened evaluate` prints when a run ends.

One table a newcomer can read without opening results.md: clean accuracy,
then per attack its threat model, how many images / (image, target) pairs it
ran on, the success rate with its 95 % Wilson interval, whether the quick
budget capped its images, and its seconds; then the masking flags and the
wall time of the whole run.
"""

from hardened.reporting.formatting import format_eps, format_interval, format_rate


def _threat(e):
    if e.get("eps") is not None:
        text = f"{e.get('norm') or '?'} <= {format_eps(e['eps'])}"
    else:
        text = f"{e.get('norm') or '?'} min-norm"
    return text + (", targeted" if e.get("targeted") else "")


def format_summary(results, seconds=None):
    """The summary of an `evaluate` result dict as lines of text (no trailing newline).

    Args:
        results: What `hardened.evaluation.evaluate` returns.
        seconds: Wall time of the whole command, printed on the last line.
    """
    n, k = results.get("n", 0), results.get("n_correct", 0)
    lines = [f"{results.get('model_name') or 'model'} on {results.get('dataset')} "
             f"({results.get('backend')}, seed {results.get('seed')}): clean accuracy "
             f"{format_rate(results.get('clean_accuracy'))} {format_interval(k, n)} on n={n}"]
    rows = [("attack", "threat", "n", "success", "95 % CI", "s", "")]
    for e in results.get("attacks", []):
        ok = e.get("status") == "ok" and e.get("success_rate") is not None
        if e.get("targeted"):
            count = f"{e.get('n_images', 0)}x{e.get('n_attacked', 0) // max(e.get('n_images', 0), 1)}"
        else:
            count = str(e.get("n_attacked", 0))
        note = "quick budget" if e.get("quick_capped") else ""
        if not ok:
            note = f"{e.get('status')}: {e.get('reason') or e.get('error') or ''}".strip()
        rows.append((e["name"], _threat(e), count if ok else "-", format_rate(e.get("success_rate")) if ok else "-",
                     format_interval(e.get("n_success", 0), e.get("n_attacked", 0)) if ok else "",
                     f"{e.get('seconds', 0.0):.0f}", note))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [r[i].rjust(widths[i]) for i in range(2, 6)]
        lines.append("  " + "  ".join(cells) + (f"  {r[6]}" if r[6] else ""))
    for e in results.get("attacks", []):
        if e.get("components"):  # AutoAttack: what each component added, in run order
            parts = [f"{c['attack']} {c['n_fooled']}/{c['n_attacked']}" for c in e["components"]]
            lines.append(f"  {e['name']} components (fooled / attacked, each on what the earlier ones left): "
                         + ", ".join(parts))
    lines.append("  n: images the attack ran on (targeted: images x targets, the success rate is over the pairs); "
                 "success: share of correctly classified inputs turned adversarial")
    lines.extend(_worst_case(results))
    masking = [f for f in results.get("flags", []) if f.get("kind") == "masking" and f.get("evaluated", True)]
    triggered = [f for f in masking if f.get("triggered")]
    lines.append("gradient masking: " + ("YES" if triggered else "no") +
                 f" ({len(triggered)} of {len(masking)} checks triggered)")
    for f in triggered:
        lines.append(f"  ! {f['name']}: {f.get('detail', '')}")
    for f in results.get("flags", []):
        if f.get("kind") == "convergence" and f.get("triggered"):
            lines.append(f"attack convergence: {f['name']}: {f.get('detail', '')}")
    if results.get("randomized"):
        lines.append("randomized model: single-sample white-box numbers are unreliable; see the EOT and "
                     "fixed-randomness rows of the adaptive suite")
    budget = results.get("budget") or {}
    if budget.get("note"):
        lines.append(f"budget: {budget['note']}")
    if seconds is not None:
        minutes, secs = divmod(int(round(seconds)), 60)
        lines.append(f"finished in {minutes} min {secs:02d} s")
    return "\n".join(lines)


def _worst_case(results):
    """The headline: per l_inf / l2 budget, the strongest attack's success and the robust accuracy it leaves."""
    out = []
    n, n_correct = results.get("n", 0), results.get("n_correct", 0)
    groups = {}
    for e in results.get("attacks", []):
        if e.get("status") == "ok" and e.get("eps") is not None and not e.get("targeted") \
                and e.get("success_rate") is not None and e.get("n_attacked"):
            groups.setdefault((e.get("norm"), e["eps"]), []).append(e)
    for (norm, eps), entries in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        worst = max(entries, key=lambda e: (e["success_rate"], e["n_attacked"]))
        robust = n_correct * (1.0 - worst["success_rate"]) / n if n else None
        out.append(f"worst case at {_threat(worst)}: {worst['name']} {format_rate(worst['success_rate'])} "
                   f"{format_interval(worst.get('n_success', 0), worst['n_attacked'])} -> robust accuracy "
                   f"{format_rate(robust)} (of {len(entries)} attacks at this budget; fewer images -> wider CI)")
    return out
