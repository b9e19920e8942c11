"""Experiment: does an HRS CIFAR-10 block-2 channel gain from more epochs over the existing frozen block 1?"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; sys.path.insert(0, '/tmp/wt')
import keras, numpy as np
from pathlib import Path
from hardened.recipes.presets import RECIPES
from hardened.recipes.hrs import _replay, _channel_seed
from hardened.recipes.train import fit_model, load_split, resolve_precision, build_in_policy
from hardened.models import build_model
from hardened.zoo.checkpoint import named_variables
from safetensors.numpy import load_file

EPOCHS = int(sys.argv[1])
recipe = RECIPES["hrs10x10-cifar10"]
kwargs = dict(recipe["kwargs"])
policy = resolve_precision("auto")
print("policy", policy, flush=True)
build = lambda **c: build_in_policy(lambda: build_model("hrs_cnn", **{**kwargs, **c}), policy)
keras.utils.set_random_seed(0)
model = build()
# load trained weights by variable path
w = load_file("/work/main/work/hrs10x10-cifar10/model.safetensors")
vars_ = named_variables(model)
missing = [k for k in vars_ if k not in w]
print("missing", missing[:5], len(missing), "of", len(vars_), flush=True)
for k, v in vars_.items():
    if k in w:
        v.assign(w[k].astype(v.dtype))
switch1, switch2 = model.get_layer("switch1"), model.get_layer("switch2")
for b in switch1.branches:
    b.trainable = False
switch1.set_path(None)
seed = _channel_seed(0, 2, 99)
keras.utils.set_random_seed(seed)
head = build(channels=(1, 1)).get_layer("switch2").branches[0]
trainer = _replay(model, {"switch2": head}, "exp_block2")
train, test = load_split("cifar10", data_dir=None, max_train=None, max_test=None)
fit = {**recipe["fit"], **recipe.get("fit_block2", {}), "epochs": EPOCHS}
print(fit, flush=True)
s = fit_model(trainer, train, test, Path(f"/tmp/b2exp/e{EPOCHS}"), seed=seed, verbose=2, **fit)
print(s, flush=True)
