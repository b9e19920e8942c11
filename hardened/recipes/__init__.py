"""Training and conversion procedures: each writes a checkpoint folder.

Named recipes live in `presets.RECIPES`; `run_recipe(name)` runs one
(resumable), and ``hardened train NAME`` is the same from the shell.
"""

from hardened.recipes.cr_search import search_compression
from hardened.recipes.distributed import data_parallel, replica_count
from hardened.recipes.presets import RECIPES, SEED_CRS
from hardened.recipes.run import copy_weights_by_name, get_recipe, list_recipes, run_recipe
from hardened.recipes.train import ArrayBatches, WarmupLinearDecay, fit_model, plot_training_curve, read_log

__all__ = ["RECIPES", "SEED_CRS", "ArrayBatches", "WarmupLinearDecay", "copy_weights_by_name", "fit_model",
           "get_recipe", "list_recipes", "plot_training_curve", "read_log", "run_recipe",
           "data_parallel", "replica_count", "search_compression"]
