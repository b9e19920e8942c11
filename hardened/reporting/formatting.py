"""How numbers, threat models and tables are printed in cards, the leaderboard and the run summary.

One place for the formats, so that a rate or an epsilon reads the same
everywhere: rates as ``"5.3 %"``, 95 % Wilson intervals as ``"[0.9, 24.6]"``,
eps as ``8/255`` where it is a multiple of 1/255, threat keys
(``linf:0.3:untargeted``) as ``ℓ∞, ε = 0.3``; Markdown tables.
"""

import math

from hardened.evaluation.metrics import wilson_interval

def format_rate(rate):
    """A success rate or accuracy in [0, 1] as the cards print it (``"5.3 %"``; ``"–"`` if missing)."""
    return "–" if rate is None or (isinstance(rate, float) and math.isnan(rate)) else f"{100 * rate:.1f} %"


def format_interval(k, n):
    """The 95 % Wilson interval of ``k / n`` as ``"[0.9, 24.6]"`` (percent)."""
    lo, hi = wilson_interval(k, n)
    return "" if lo is None else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _num(v, fmt="{:.4g}"):
    return "–" if v is None else fmt.format(v)


def format_eps(eps):
    """An epsilon as the cards print it: ``8/255`` for a long multiple of 1/255, else 4 significant digits."""
    text = f"{eps:.4g}"
    k = eps * 255
    # 5e-5: threat keys keep 6 significant digits (8/255 -> 0.0313725, 7.99999 / 255).
    if 0 < eps < 1 and len(f"{eps:g}") > 6 and abs(k - round(k)) < 5e-5:
        return f"{round(k)}/255"
    return text


_NORMS = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1", "l0": "ℓ0"}


def _threat_text(norm, eps, targeted):
    bound = "minimal distortion" if eps is None else f"ε = {format_eps(eps)}"
    return f"{_NORMS.get(norm, norm)}, {bound}" + (", targeted" if targeted else "")


def _threat_ascii(norm, eps, targeted):
    return f"{norm} {'min' if eps is None else format_eps(eps)}" + (", targeted" if targeted else "")


def _threat_key_ascii(key):
    parts = str(key).split(":")
    if len(parts) != 3:
        return str(key)
    return _threat_ascii(parts[0], None if parts[1] == "unbounded" else float(parts[1]), parts[2] == "targeted")


def _threat_eps(key):
    """The eps of a threat key ``norm:eps:kind`` (``inf`` when unbounded)."""
    bound = str(key).split(":")[1] if str(key).count(":") == 2 else "unbounded"
    return float("inf") if bound == "unbounded" else float(bound)


def _threat_key_text(key):
    parts = str(key).split(":")
    if len(parts) != 3:
        return str(key)
    norm, bound, kind = parts
    eps = None if bound == "unbounded" else float(bound)
    return _threat_text(norm, eps, kind == "targeted")


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows, align=None):
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines
