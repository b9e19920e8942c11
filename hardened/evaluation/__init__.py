"""Robustness evaluation: metrics, attack suites, gradient-masking checks, results.json.

Entry point::

    results = hardened.evaluation.evaluate(model, (x, y), suite="hash-gi", n=500, out_dir="runs/eval")

Importing this package is cheap: attacks, tqdm and matplotlib are imported
only when an evaluation runs.
"""

from hardened.evaluation import des, masking, metrics, suites
from hardened.evaluation.des import des_compare
from hardened.evaluation.evaluate import evaluate, render_markdown, write_results
from hardened.evaluation.masking import gradient_masking, run_masking_checks
from hardened.evaluation.metrics import (
    clean_accuracy,
    deepfool_robustness,
    defense_efficiency_score,
    estimator_table,
    logit_gradient_magnitude,
    logit_variance,
    mean_distortion,
    normalize_unit,
    robustness_estimator,
    robustness_terms,
    targeted_pairs,
    targeted_success,
    untargeted_success,
)
from hardened.evaluation.suites import SUITES, AttackSpec, build_suite

__all__ = [
    "SUITES", "AttackSpec", "build_suite", "clean_accuracy", "deepfool_robustness",
    "defense_efficiency_score", "des", "des_compare",
    "estimator_table", "evaluate", "gradient_masking", "logit_gradient_magnitude", "logit_variance", "masking",
    "mean_distortion", "metrics", "normalize_unit", "render_markdown", "robustness_estimator",
    "robustness_terms", "run_masking_checks", "suites", "targeted_pairs", "targeted_success",
    "untargeted_success", "write_results",
]
