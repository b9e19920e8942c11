"""Reporting: model cards, the zoo leaderboard and the run summary, rendered from saved results.

Above `hardened.evaluation` (whose results files it reads) and `hardened.zoo`
(the registry and where the card folders live); nothing below imports it.

    hardened cards [--check] [FOLDER ...]        # model_cards/NAME/README.md
    hardened leaderboard [--write | --check]     # model_cards/LEADERBOARD.md
"""

from hardened.reporting.cards import check_card, render_all, render_card, write_card
from hardened.reporting.leaderboard import render as render_leaderboard

__all__ = ["check_card", "render_all", "render_card", "render_leaderboard", "write_card"]
