"""Builders of hardened.models: every builder x defense spec, HRS switching, shapes, params, round trips."""

import keras
import numpy as np
import pytest

from hardened.layers import (
    GaussianNoiseInjection,
    HashedConv2D,
    HashedDense,
    PrunableConv2D,
    PrunableDense,
    RandomSwitch,
    set_randomness,
)
from hardened.models import (
    BUILDERS,
    SINGLE_FC,
    TEST_CONFIGS,
    build_model,
    cwcnn,
    hashnet_cnn,
    hrs_cnn,
    hrs_path_model,
    hrs_switches,
    inception_v3,
    list_builders,
    resnet18,
    cnn7,
    stage_outputs,
)

NAMES = list_builders()
CONV_NOISE = {"init": 0.1, "inner": 0.05, "seed": 4}
STOCHASTIC = {
    "dropout": {"kind": "dropout", "rate": 0.3, "seed": 1},
    "sap": {"kind": "sap", "ratio": 1.0, "seed": 1},
    "noise": {"kind": "noise", "stddev": 0.1, "seed": 1},
}
# The stochastic layer only touches the shared head: each builder gets one kind
# (in turn), and every kind runs on several builders.
SPEC_NAMES = ["none", "hashed", "prune", "stochastic", "conv_noise"]


def _stochastic_kind(name):
    return list(STOCHASTIC)[NAMES.index(name) % len(STOCHASTIC)]


def _spec(name, spec_name):
    """The defense spec ``spec_name`` for builder ``name``."""
    spec = {
        "none": None,
        "hashed": {"hashed": [1 / 64, 1 / 8]},
        "prune": {"prune": True},
        "stochastic": {"stochastic": STOCHASTIC[_stochastic_kind(name)]},
        "conv_noise": {"conv_noise": CONV_NOISE},
    }[spec_name]
    if name in SINGLE_FC and spec_name in ("hashed", "stochastic"):
        # Single-FC heads need the extra (hashed) FC that seed 000 adds before the logits.
        spec = {**spec, "extra_fc": 16}
    return spec


@pytest.fixture(autouse=True, scope="module")
def _fast_jax_compiles():
    # On JAX, building a model compiles one random initializer per weight shape;
    # XLA's optimisation passes dominate that (1-2 s per shape on small CPUs).
    if keras.backend.backend() != "jax":
        yield
        return
    import jax

    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _batch(shape, n=2, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(shape)).astype("float32")


def _all_layers(model):
    """Every layer, nested ones (HRS paths) included."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _convs(layers):
    return [lyr for lyr in layers if isinstance(lyr, (keras.layers.Conv2D, HashedConv2D))]


def _denses(layers):
    return [lyr for lyr in layers if isinstance(lyr, (keras.layers.Dense, HashedDense))]


def test_registry_and_test_configs_cover_the_same_builders():
    assert NAMES == sorted(BUILDERS) == sorted(TEST_CONFIGS)
    for name, cfg in TEST_CONFIGS.items():
        assert len(cfg["input_shape"]) == 3, name


def test_unknown_name_raises_with_suggestion():
    with pytest.raises(ValueError, match="resnet50"):
        build_model("resnet05")
    with pytest.raises(ValueError, match="Known models"):
        build_model("alexnet")


@pytest.mark.parametrize("spec_name", SPEC_NAMES)
@pytest.mark.parametrize("name", NAMES)
def test_builder_with_defense(name, spec_name):
    cfg = TEST_CONFIGS[name]
    num_classes = cfg.get("num_classes", 10)
    model = build_model(name, **cfg, defense=_spec(name, spec_name))
    assert isinstance(model, keras.Model) and model.name == name
    x = _batch(cfg["input_shape"])
    y = _np(model(x))
    assert y.shape == (2, num_classes)
    assert np.all(np.isfinite(y))

    layers = _all_layers(model)
    names = [lyr.name for lyr in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"duplicate layer names: {duplicates}"

    convs, denses = _convs(layers), _denses(layers)
    assert convs and denses
    if spec_name == "prune":
        assert all(isinstance(lyr, PrunableConv2D) for lyr in convs)
        assert all(isinstance(lyr, PrunableDense) for lyr in denses)
    if spec_name == "hashed":
        logits = [lyr for lyr in denses if lyr.name.endswith("logits")]
        assert logits and all(isinstance(lyr, HashedDense) for lyr in logits)
        assert sum(isinstance(lyr, HashedDense) for lyr in denses) == 2 * len(logits)
    if spec_name == "stochastic":
        assert f"fc1_{_stochastic_kind(name)}" in names
    # Conv-level noise layers (the head's stochastic "noise" kind is fc1_noise).
    noise = [lyr for lyr in layers if isinstance(lyr, GaussianNoiseInjection) and lyr.name != "fc1_noise"]
    if spec_name == "conv_noise":
        # One noise layer before every conv: "init" before a first conv, "inner" elsewhere.
        assert sorted(n.name for n in noise) == sorted(c.name + "_noise" for c in convs)
        assert {n.stddev for n in noise} == {CONV_NOISE["init"], CONV_NOISE["inner"]}
        first = [n for n in noise if n.stddev == CONV_NOISE["init"]]
        assert len(first) == (cfg["channels"][0] if name == "hrs_cnn" else 1)
    else:
        assert not noise


# Round trips: every builder with all combinable defenses at once (hashed and
# prune exclude each other), and the hashed variants. ResNet-34/101 are left
# out: they are made of exactly the layers of ResNet-18/50.
ROUND_TRIPS = [(name, "combined") for name in NAMES if name not in ("resnet34", "resnet101")] + [
    ("cwcnn", "hashed"), ("resnet18", "hashed"), ("hrs_cnn", "hashed"), ("hashnet_cnn", "compression")]


@pytest.mark.parametrize("name, variant", ROUND_TRIPS)
def test_config_round_trip_gives_equal_outputs(name, variant):
    cfg = dict(TEST_CONFIGS[name])
    if variant == "combined":
        cfg["defense"] = {"prune": True, "conv_noise": CONV_NOISE, "extra_fc": 16,
                          "stochastic": STOCHASTIC[_stochastic_kind(name)]}
    elif variant == "hashed":
        cfg["defense"] = _spec(name, "hashed")
    else:
        cfg["compression"] = 1 / 8
    model = build_model(name, **cfg)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert [lyr.name for lyr in _all_layers(clone)] == [lyr.name for lyr in _all_layers(model)]
    assert [type(lyr) for lyr in _all_layers(clone)] == [type(lyr) for lyr in _all_layers(model)]
    # Randomness off: every variant is then deterministic.
    set_randomness(model, False)
    set_randomness(clone, False)
    x = _batch(cfg["input_shape"])
    np.testing.assert_allclose(_np(clone(x)), _np(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(STOCHASTIC))
def test_stochastic_head_is_random_until_switched_off(kind):
    model = cwcnn(**TEST_CONFIGS["cwcnn"], defense={"stochastic": STOCHASTIC[kind]})
    x = _batch(TEST_CONFIGS["cwcnn"]["input_shape"])
    outs = {_np(model(x)).tobytes() for _ in range(5)}
    assert len(outs) > 1
    set_randomness(model, False)
    assert len({_np(model(x)).tobytes() for _ in range(3)}) == 1


def test_conv_noise_is_random_until_switched_off():
    cfg = TEST_CONFIGS["cnn7"]
    model = cnn7(**cfg, defense={"conv_noise": CONV_NOISE})
    assert model.get_layer("conv1_noise").stddev == 0.1
    assert model.get_layer("conv2_noise").stddev == 0.05
    assert model.layers[1].name == "conv1_noise"  # noise comes before the first conv
    x = _batch(cfg["input_shape"])
    assert len({_np(model(x)).tobytes() for _ in range(3)}) > 1
    set_randomness(model, False)
    assert len({_np(model(x)).tobytes() for _ in range(3)}) == 1


def _hrs():
    return hrs_cnn(**TEST_CONFIGS["hrs_cnn"], seed=7)


def test_hrs_structure():
    model = _hrs()
    s1, s2 = hrs_switches(model)
    assert isinstance(s1, RandomSwitch) and isinstance(s2, RandomSwitch)
    assert (s1.name, s2.name) == ("switch1", "switch2")
    n1, n2 = TEST_CONFIGS["hrs_cnn"]["channels"]
    assert [b.name for b in s1.branches] == [f"block1_path{i}" for i in range(n1)]
    assert [b.name for b in s2.branches] == [f"block2_path{j}" for j in range(n2)]
    assert [lyr.name for lyr in s1.branches[1].layers if isinstance(lyr, keras.layers.Conv2D)] == [
        f"block1_path1_conv{k}" for k in range(1, 5)]
    assert s1.branches[0].layers[-1].name == "block1_path0_fc1"
    assert [lyr.name for lyr in s2.branches[1].layers][1:] == ["block2_path1_fc2", "block2_path1_logits"]


def test_hrs_switches_randomly_and_can_be_fixed():
    model = _hrs()
    x = _batch(TEST_CONFIGS["hrs_cnn"]["input_shape"])
    outs = {_np(model(x)).tobytes() for _ in range(20)}
    assert len(outs) >= 2
    s1, s2 = hrs_switches(model)
    s1.set_path(2)
    s2.set_path(1)
    pinned = {_np(model(x)).tobytes() for _ in range(3)}
    assert len(pinned) == 1
    s1.set_path(None)
    s2.set_path(None)
    set_randomness(model, False)  # fixed randomness: path (0, 0)
    fixed = {_np(model(x)).tobytes() for _ in range(3)}
    assert len(fixed) == 1
    np.testing.assert_allclose(np.frombuffer(fixed.pop(), "float32"),
                               _np(hrs_path_model(model, 0, 0)(x)).ravel(), rtol=1e-5, atol=1e-6)


def test_hrs_path_model_shares_layers_with_hrs_model():
    model = _hrs()
    s1, s2 = hrs_switches(model)
    path = hrs_path_model(model, 2, 1)
    assert path.name == "hrs_path_2_1"
    x = _batch(TEST_CONFIGS["hrs_cnn"]["input_shape"])
    s1.set_path(2)
    s2.set_path(1)
    np.testing.assert_allclose(_np(path(x)), _np(model(x)), rtol=1e-5, atol=1e-6)
    # Same variables, not copies: training the path trains the HRS model.
    hrs_ids = {id(v) for v in model.weights}
    assert path.weights and all(id(v) in hrs_ids for v in path.weights)
    kernel = s2.branches[1].get_layer("block2_path1_logits").kernel
    kernel.assign(np.zeros(kernel.shape, "float32"))
    np.testing.assert_allclose(_np(path(x)), _np(model(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="switch1"):
        hrs_path_model(model, 3, 0)


# One path is active per step, so the others get no gradient (torch warns about it).
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_hrs_trains_with_training_dropout():
    cfg = TEST_CONFIGS["hrs_cnn"]
    model = hrs_cnn(**cfg, dropout=0.5, defense={"stochastic": STOCHASTIC["sap"]})
    # Dropout sits after switch1 (one shared layer), so every path model has it.
    assert [lyr.name for lyr in hrs_path_model(model, 1, 0).layers][-3:] == [
        "block1_dropout", "fc1_sap", "block2_path0"]
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _batch(cfg["input_shape"], n=4)
    loss = model.train_on_batch(x, np.arange(4) % 10)
    assert np.isfinite(float(np.ravel(loss)[0]))
    assert model.predict_on_batch(x).shape == (4, 10)


def test_hrs_defense_spec_reaches_every_path():
    cfg = TEST_CONFIGS["hrs_cnn"]
    model = hrs_cnn(**cfg, defense={"hashed": [1 / 8, 1 / 2], "hash_seed": 3})
    layers = _all_layers(model)
    hashed = [lyr for lyr in layers if isinstance(lyr, HashedDense)]
    assert sorted(lyr.name for lyr in hashed) == sorted(
        f"block2_path{j}_{n}" for j in range(cfg["channels"][1]) for n in ("fc2", "logits"))
    # Independent hashes per path and layer.
    assert len({lyr.seed for lyr in hashed}) == len(hashed)


def _conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def _dense_params(n_in, n_out):
    return n_in * n_out + n_out


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_cnn7_parameter_count(shape):
    h, _, c = shape
    # 3x3 "valid" convs, 2x2 pools: h -> h-4 -> (h-4)//2 -> -4 -> //2.
    side = ((h - 4) // 2 - 4) // 2
    expected = (_conv_params(3, c, 64) + _conv_params(3, 64, 128) + _conv_params(3, 128, 128)
                + _conv_params(3, 128, 64) + _dense_params(side * side * 64, 256) + _dense_params(256, 256)
                + _dense_params(256, 10))
    assert expected == {(28, 28, 1): 626_634, (32, 32, 3): 775_242}[shape]
    model = cnn7(input_shape=shape)
    assert model.count_params() == expected
    assert _np(model(_batch(shape))).shape == (2, 10)


@pytest.mark.parametrize("shape, expected", [((28, 28, 1), 312_202), ((32, 32, 3), 1_147_978)])
def test_cwcnn_widths_follow_input_channels(shape, expected):
    # Carlini & Wagner's MNIST and CIFAR-10 models.
    assert cwcnn(input_shape=shape).count_params() == expected


def test_hashnet_compression_hashes_every_layer():
    cfg = TEST_CONFIGS["hashnet_cnn"]
    plain = hashnet_cnn(**cfg)
    model = hashnet_cnn(**cfg, compression=1 / 8, hash_seed=10)
    layers = [model.get_layer(n) for n in ("conv1", "conv2", "fc1", "logits")]
    assert [type(lyr) for lyr in layers] == [HashedConv2D, HashedConv2D, HashedDense, HashedDense]
    assert [lyr.seed for lyr in layers] == [10, 11, 12, 13]
    assert all(lyr.compression == 1 / 8 for lyr in layers)
    assert model.count_params() < plain.count_params() / 6
    assert _np(model(_batch(cfg["input_shape"]))).shape == (2, 10)
    with pytest.raises(ValueError, match="prune"):
        hashnet_cnn(**cfg, compression=1 / 8, defense="prune")


@pytest.mark.parametrize("name, expected", [
    ("resnet18", {"stem_out": 32, "stage1_out": 32, "stage2_out": 16, "stage3_out": 8, "stage4_out": 4}),
    ("vgg16", {"stage1_out": 16, "stage2_out": 8, "stage3_out": 4, "stage4_out": 2, "stage5_out": 1}),
])
def test_stage_outputs_are_named(name, expected):
    stages = stage_outputs(build_model(name, **TEST_CONFIGS[name]))
    assert {key: t.shape[1] for key, t in stages.items()} == expected
    assert list(stages) == list(expected)


def test_normalization_lives_inside_the_model():
    cfg = TEST_CONFIGS["cwcnn"]
    mean, std = 0.1307, 0.3081
    model = cwcnn(**cfg, mean=mean, std=std)
    plain = cwcnn(**cfg)
    plain.set_weights(model.get_weights())
    x = _batch(cfg["input_shape"])
    np.testing.assert_allclose(_np(model(x)), _np(plain((x - mean) / std)), rtol=1e-4, atol=1e-5)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(_np(clone(x)), _np(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("builder, kwargs, match", [
    (inception_v3, {"input_shape": (74, 74, 3)}, "at least 75x75"),
    (cnn7, {"input_shape": (28, 28)}, "height, width, channels"),
    (cnn7, {"input_shape": (10, 10, 1)}, "at least"),
    (cnn7, {"input_shape": None}, "height, width, channels"),
    (cwcnn, {"input_shape": (28, 28, 2)}, "widths"),
    (resnet18, {"width": 0}, "width"),
    (resnet18, {"defense": {"stochastic": {"kind": "sap"}}}, "extra_fc"),
    (resnet18, {"defense": {"hashed": [1 / 8, 1 / 8]}}, "extra_fc"),
    (cnn7, {"defense": {"conv_noise": {"init": -1.0}}}, "conv_noise"),
    (hrs_cnn, {"channels": (0, 3)}, "channels"),
])
def test_impossible_arguments_raise(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


# Full-size models (ImageNet-sized Inception and all): run with `-m slow`.
FULL_SIZE_PARAMS = {
    # name: (kwargs, total params incl. BN moving statistics)
    "cnn7": ({}, 626_634),
    "hashnet_cnn": ({}, 3_423_498),
    "cwcnn": ({"input_shape": (32, 32, 3)}, 1_147_978),
    "hrs_cnn": ({"input_shape": (32, 32, 3)}, 11_479_780),
    "vgg16": ({}, 15_257_802),
    "vgg19": ({}, 20_571_338),
    "resnet18": ({}, 11_183_562),
    "resnet34": ({}, 21_299_146),
    "resnet50": ({}, 23_573_962),
    "resnet101": ({}, 42_618_314),
    "inception_v3": ({"num_classes": 1000}, 23_851_784),  # = keras.applications.InceptionV3
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_parameter_counts(name):
    kwargs, expected = FULL_SIZE_PARAMS[name]
    assert build_model(name, **kwargs).count_params() == expected
