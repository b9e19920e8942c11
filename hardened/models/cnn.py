"""The small CNNs of seeds 000, 001, 002 and 004 (MNIST / CIFAR-10 scale).

All take images in [0, 1], NHWC, and return logits. Conv layers are
``conv1 .. convK`` (ReLU fused), pooling ``pool1 ..``, then ``flatten`` and the
head of `hardened.models.heads` (``fc1 .. fcK``, ``logits``).
"""

import keras

from hardened.layers import RandomSwitch
from hardened.models._common import ConvFactory, check_input_shape, head_spec, preprocess
from hardened.models.heads import classifier_head, dense_layer, stochastic_layer

# Carlini & Wagner's standard nets (conv1-4, fc1, fc2), by input channels.
CW_WIDTHS = {1: (32, 32, 64, 64, 200, 200), 3: (64, 64, 128, 128, 256, 256)}


def _min_size(padding, pools=2, convs_per_pool=2):
    """Smallest input side for which every conv and pool still has an output."""
    if padding == "same":
        return 2 ** pools
    size = 1
    for _ in range(pools):
        size = 2 * size + 2 * convs_per_pool
    return size


def _check_padding(padding, builder):
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"{builder}: padding must be 'valid' or 'same', got {padding!r}.")
    return padding


def _conv_stack(x, conv, plan, padding, prefix=""):
    """Apply ``plan`` (ints: 3x3 conv+ReLU widths, "M": 2x2 max-pool), then flatten."""
    n_conv = n_pool = 0
    for item in plan:
        if item == "M":
            n_pool += 1
            x = keras.layers.MaxPooling2D(2, name=f"{prefix}pool{n_pool}")(x)
        else:
            n_conv += 1
            x = conv(x, item, 3, f"{prefix}conv{n_conv}", padding=padding, activation="relu")
    return keras.layers.Flatten(name=f"{prefix}flatten")(x)


def cnn7(input_shape=(28, 28, 1), num_classes=10, defense=None, dropout=None, padding="valid",
              hidden=(256, 256), mean=None, std=None):
    """Seed 000's 7-layer net: Conv64-Conv128-MP-Conv128-Conv64-MP-FC256-FC256-FC10.

    3x3 convs with ReLU, 2x2 max-pooling. ``"valid"`` padding (the Keras
    default of the paper's era) works for 28x28x1 and 32x32x3 (flatten 4x4x64
    and 5x5x64); ``"same"`` gives 7x7x64 and 8x8x64.

    Args:
        input_shape: ``(H, W, C)``, e.g. ``(28, 28, 1)`` or ``(32, 32, 3)``.
        num_classes: Number of logits.
        defense: Defense spec (see `hardened.models.heads`).
        dropout: Training-time dropout rate after each hidden FC layer.
        padding: ``"valid"`` or ``"same"``.
        hidden: Widths of the hidden FC layers.
        mean, std: Optional per-channel normalisation applied inside the model.

    Returns:
        A functional `keras.Model` named ``cnn7``.
    """
    padding = _check_padding(padding, "cnn7")
    shape = check_input_shape(input_shape, "cnn7", min_size=_min_size(padding))
    spec = head_spec(defense, "cnn7")
    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)
    x = _conv_stack(x, ConvFactory(spec), [64, 128, "M", 128, 64, "M"], padding)
    outputs = classifier_head(x, num_classes, hidden=hidden, defense=spec, dropout=dropout)
    return keras.Model(inputs, outputs, name="cnn7")


def hashnet_cnn(input_shape=(28, 28, 1), num_classes=10, defense=None, compression=None, hash_seed=0,
                kernel_size=5, fc_units=512, dropout=None, mean=None, std=None):
    """Seed 001's 784-C64-C128-F512-10 MNIST net, optionally hashed in every layer.

    The paper gives only the layer widths. Pooling follows the classic
    TensorFlow MNIST net this shape comes from: 5x5 "same" convs, each
    followed by 2x2 max-pooling (28 -> 14 -> 7, flatten 7x7x128).

    Args:
        input_shape: ``(H, W, C)``.
        num_classes: Number of logits.
        defense: Defense spec. With ``compression`` its ``hashed``/``hash_seed``
            (if given) still set the two FC layers' ratios and seeds.
        compression: Ratio K / virtual weights (e.g. ``1/64``) applied to
            EVERY layer (`HashedConv2D`, `HashedDense`); ``None``: plain net.
        hash_seed: Hash seed of ``conv1``; the following layers use
            ``hash_seed + 1``, ``+ 2``, ``+ 3`` (conv2, fc1, logits).
        kernel_size: Conv kernel size.
        fc_units: Width of the FC layer.
        dropout: Training-time dropout after the FC layer.
        mean, std: Optional per-channel normalisation inside the model.

    Returns:
        A functional `keras.Model` named ``hashnet_cnn``.
    """
    shape = check_input_shape(input_shape, "hashnet_cnn", min_size=4)
    spec = head_spec(defense, "hashnet_cnn")
    if compression is not None:
        if spec["prune"]:
            raise ValueError("hashnet_cnn: compression (hashed layers) and defense['prune'] are exclusive.")
        if not 0 < float(compression) <= 1:
            raise ValueError(f"hashnet_cnn: compression must be in (0, 1], got {compression!r}.")
        explicit = defense if isinstance(defense, dict) else {}
        if explicit.get("hashed") is None:
            spec["hashed"] = [float(compression), float(compression)]
        if "hash_seed" not in explicit:
            spec["hash_seed"] = int(hash_seed) + 2
    conv = ConvFactory(spec, hash_cr=compression, hash_seed=hash_seed)
    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)
    for i, filters in enumerate((64, 128)):
        x = conv(x, filters, kernel_size, f"conv{i + 1}", padding="same", activation="relu")
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = classifier_head(x, num_classes, hidden=(fc_units,), defense=spec, dropout=dropout)
    return keras.Model(inputs, outputs, name="hashnet_cnn")


def _cw_widths(widths, channels, builder):
    if widths is None:
        if channels not in CW_WIDTHS:
            raise ValueError(f"{builder}: no default widths for {channels} input channels (1: MNIST, "
                             f"3: CIFAR-10); pass widths=(c1, c2, c3, c4, f1, f2).")
        return CW_WIDTHS[channels]
    widths = tuple(int(w) for w in widths)
    if len(widths) != 6 or min(widths) < 1:
        raise ValueError(f"{builder}: widths must be 6 positive ints (conv1-4, fc1, fc2), got {widths!r}.")
    return widths


def cwcnn(input_shape=(28, 28, 1), num_classes=10, defense=None, widths=None, dropout=None,
           mean=None, std=None):
    """Carlini & Wagner's 4-conv + 3-FC net (seeds 002 and 004's base model).

    MNIST: Conv32-Conv32-MP-Conv64-Conv64-MP-FC200-FC200-10; CIFAR-10:
    Conv64-Conv64-MP-Conv128-Conv128-MP-FC256-FC256-10. 3x3 "valid" convs and
    2x2 max-pooling as in the reference code.

    Args:
        input_shape: ``(H, W, C)``; the default widths follow ``C`` (1 or 3).
        num_classes: Number of logits.
        defense: Defense spec.
        widths: ``(c1, c2, c3, c4, f1, f2)`` overriding the defaults.
        dropout: Training-time dropout rate. The head applies it after each
            hidden FC layer (the reference applies 0.5 after fc1 only).
        mean, std: Optional per-channel normalisation inside the model.

    Returns:
        A functional `keras.Model` named ``cwcnn``.
    """
    shape = check_input_shape(input_shape, "cwcnn", min_size=_min_size("valid"))
    c1, c2, c3, c4, f1, f2 = _cw_widths(widths, shape[2], "cwcnn")
    spec = head_spec(defense, "cwcnn")
    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)
    x = _conv_stack(x, ConvFactory(spec), [c1, c2, "M", c3, c4, "M"], "valid")
    outputs = classifier_head(x, num_classes, hidden=(f1, f2), defense=spec, dropout=dropout)
    return keras.Model(inputs, outputs, name="cwcnn")


def hrs_cnn(input_shape=(28, 28, 1), num_classes=10, defense=None, channels=(10, 10), seed=0, widths=None,
            dropout=None, mean=None, std=None):
    """Seed 004's hierarchical random switching model over `cwcnn`.

    Two switching blocks split between FC1 and FC2:

    * ``switch1`` (`RandomSwitch`, seed ``seed``) over ``channels[0]``
      sub-models ``block1_path{i}``: conv1-4, pools, flatten, fc1 (then the
      optional training dropout ``block1_dropout``, shared);
    * ``switch2`` (seed ``seed + 1``) over ``channels[1]`` sub-models
      ``block2_path{j}``: fc2, logits.

    Every active path has `cwcnn`'s structure. Layers inside a path are
    prefixed with its name (``block1_path3_conv1``). The defense spec applies
    per path: ``prune`` and ``conv_noise`` to every path's layers, ``hashed``
    to fc2 and logits of every block-2 path (independent hashes per path),
    ``stochastic`` between the two switches (after fc1, as in the head).
    Use `hrs_path_model` for the single paths of bottom-up training.

    Args:
        input_shape: ``(H, W, C)``.
        num_classes: Number of logits.
        defense: Defense spec.
        channels: ``(N1, N2)`` parallel channels of the two blocks.
        seed: Seed of ``switch1``; ``switch2`` uses ``seed + 1``.
        widths: As in `cwcnn`.
        dropout: Training-time dropout after fc1, at the end of block 1 (the
            reference code uses 0.3 on MNIST, 0.7 on CIFAR-10).
        mean, std: Optional per-channel normalisation inside the model (shared
            by all paths, before ``switch1``).

    Returns:
        A functional `keras.Model` named ``hrs_cnn``.
    """
    shape = check_input_shape(input_shape, "hrs_cnn", min_size=_min_size("valid"))
    c1, c2, c3, c4, f1, f2 = _cw_widths(widths, shape[2], "hrs_cnn")
    try:
        n1, n2 = (int(c) for c in channels)
    except (TypeError, ValueError):
        raise ValueError(f"hrs_cnn: channels must be a pair (N1, N2), got {channels!r}.") from None
    if min(n1, n2) < 1:
        raise ValueError(f"hrs_cnn: channels must be >= 1, got {channels!r}.")
    spec = head_spec(defense, "hrs_cnn")
    seed = 0 if seed is None else int(seed)

    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)

    block1 = []
    for i in range(n1):
        name = f"block1_path{i}"
        p_in = keras.Input(tuple(x.shape[1:]), name=f"{name}_input")
        # Offsets keep conv-noise seeds of different paths apart.
        conv = ConvFactory(spec, seed_offset=4 * i)
        h = _conv_stack(p_in, conv, [c1, c2, "M", c3, c4, "M"], "valid", prefix=f"{name}_")
        h = dense_layer(f1, spec, f"{name}_fc1", activation="relu")(h)
        block1.append(keras.Model(p_in, h, name=name))

    block2 = []
    hashed = spec["hashed"] or (None, None)
    for j in range(n2):
        name = f"block2_path{j}"
        p_in = keras.Input((f1,), name=f"{name}_input")
        # Seed offsets 2j, 2j+1: each path's two hashed layers get their own hashes.
        h = dense_layer(f2, spec, f"{name}_fc2", activation="relu", hashed_cr=hashed[0], seed_offset=2 * j)(p_in)
        h = dense_layer(num_classes, spec, f"{name}_logits", hashed_cr=hashed[1], seed_offset=2 * j + 1)(h)
        block2.append(keras.Model(p_in, h, name=name))

    x = RandomSwitch(block1, seed=seed, name="switch1")(x)
    if dropout:
        # The reference ends each block-1 channel with dropout; one shared layer
        # after the switch computes the same and keeps random ops out of the
        # switch's branches (on JAX those leak tracers under jit).
        x = keras.layers.Dropout(dropout, name="block1_dropout")(x)
    stoch = stochastic_layer(spec["stochastic"], "fc1_" + spec["stochastic"]["kind"]) if spec["stochastic"] else None
    if stoch is not None:
        x = stoch(x)
    outputs = RandomSwitch(block2, seed=seed + 1, name="switch2")(x)
    return keras.Model(inputs, outputs, name="hrs_cnn")


def hrs_switches(model):
    """``(switch1, switch2)`` of an `hrs_cnn` model."""
    try:
        return model.get_layer("switch1"), model.get_layer("switch2")
    except ValueError:
        raise ValueError(f"Model '{model.name}' has no layers 'switch1'/'switch2'; "
                         f"expected a model built by hrs_cnn.") from None


def hrs_path_model(model, block1_path, block2_path, name=None):
    """One active path of an HRS model as a plain model sharing its layers.

    Used for bottom-up training (seed 004, Algorithm 1): training this model
    trains the weights of ``block1_path{i}`` and ``block2_path{j}`` inside
    ``model``. Shared preprocessing and stochastic layers are kept.

    Args:
        model: A model built by `hrs_cnn`.
        block1_path: Index ``i`` of the block-1 channel.
        block2_path: Index ``j`` of the block-2 channel.
        name: Model name (default ``hrs_path_{i}_{j}``).

    Returns:
        A functional `keras.Model`: input -> ``block1_path{i}`` -> ``block2_path{j}``.
    """
    switches = hrs_switches(model)
    choice = {}
    for switch, index in zip(switches, (block1_path, block2_path)):
        if not 0 <= int(index) < switch.num_branches:
            raise ValueError(f"{switch.name} has {switch.num_branches} paths; got index {index!r}.")
        choice[switch.name] = switch.branches[int(index)]
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="input")
    x = inputs
    # The HRS model is a chain: replay it with each switch replaced by one branch.
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = choice.get(layer.name, layer)(x)
    return keras.Model(inputs, x, name=name or f"hrs_path_{int(block1_path)}_{int(block2_path)}")
