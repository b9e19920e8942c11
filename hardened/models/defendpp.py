"""Defend++ model construction (seed 003): a decoder attached to a classifier's encoder blocks.

`build_defendpp` wires the auto-encoder of seed 003 onto a built classifier
with named stage outputs (``resnet*``): the classifier's first blocks are
shared with the encoder, an optional AE-only copy of the deeper blocks follows,
and the decoder reconstructs the multi-scale DCT low-pass targets
(`hardened.layers.dct_lowpass_targets`). Training lives in
`hardened.recipes.defendpp`.
"""

from collections import namedtuple

import keras
import numpy as np

from hardened.layers import DecoderSkip, DecoderUp
from hardened.models._common import stage_outputs

#: Seed 003: no reconstruction loss (and no decoder output) below 7x7.
MIN_SIZE = 7

#: What `build_defendpp` returns. ``joint``: image -> dict ``{"logits", "recon0", ...}``
#: (``outputs``: the same dict of symbolic tensors); ``decoder``: list of encoder taps
#: (``taps`` names) -> list of reconstructions (``None`` without decoder); ``scales``:
#: ``(h, w)`` of each reconstructed scale, finest first.
Defendpp = namedtuple("Defendpp", ["joint", "classifier", "decoder", "taps", "scales", "outputs"])


def scale_sizes(image_size, bottleneck_size=(1, 1), min_size=MIN_SIZE):
    """``(h, w)`` of the scales that get a loss: ``H/2^m`` while at least ``min_size`` and the bottleneck's size.

    Scale 0 (the image itself) always counts.
    """
    h, w = image_size
    sizes = [(h, w)]
    m = 1
    while True:
        sh, sw = h // 2 ** m, w // 2 ** m
        if min(sh, sw) < min_size or sh < bottleneck_size[0] or sw < bottleneck_size[1]:
            return sizes
        sizes.append((sh, sw))
        m += 1


def recon_key(m):
    """Name of the joint model's output (and loss) for scale ``m``."""
    return f"recon{m}"


def _spatial(tensor):
    return int(tensor.shape[1]), int(tensor.shape[2])


def _renamed(prefix):
    def clone(layer):
        config = layer.get_config()
        config["name"] = prefix + layer.name
        return layer.__class__.from_config(config)

    return clone


def _crop_to(x, size, name):
    """Crop ``x`` at the bottom/right to spatial ``size`` (no-op when it already fits)."""
    h, w = _spatial(x)
    if (h, w) == tuple(size):
        return x
    if h < size[0] or w < size[1]:
        raise ValueError(f"Decoder output {h}x{w} is smaller than the target {size[0]}x{size[1]}.")
    return keras.layers.Cropping2D(((0, h - size[0]), (0, w - size[1])), name=name)(x)


def _out_norm(x, m):
    """BatchNormalization of scale ``m``'s output, gamma initialised to 0 (the reconstruction starts at 0).

    The U and H modules end in plain convolutions on post-ReLU features (fan-in 9 x 32 .. 9 x 256 at
    width 0.5): MSE curvature of order 10^2-10^3, so SGD at the classifier's learning rate (0.05-0.1)
    diverged within 5 steps even at lr 0.01. Normalising each output makes the modules' weights
    scale-invariant, as BatchNorm does in the classifier, and trains stably at lr 0.1.
    """
    return keras.layers.BatchNormalization(gamma_initializer="zeros", name=f"decoder_bn{m}")(x)


def build_defendpp(classifier, encoder_blocks=4, shared_blocks=4, decoder=True, min_size=MIN_SIZE):
    """Attach a Defend++ decoder to a built classifier (the classifier itself is not changed).

    Args:
        classifier: A functional model with ``stage{b}_out`` taps (see
            `hardened.models.stage_outputs`), e.g. from ``resnet18``.
        encoder_blocks: Encoder blocks ``E`` of the auto-encoder (stages 1..E).
        shared_blocks: How many of them are the classifier's own layers; the
            others are AE-only copies (fresh weights, names ``ae_<layer>``).
        decoder: ``False``: no decoder; ``joint`` outputs ``{"logits"}`` only.
        min_size: Smallest side of a reconstructed scale.

    Returns:
        A `Defendpp` tuple. ``joint`` shares every layer of ``classifier``.
    """
    if not decoder:
        outputs = {"logits": classifier.outputs[0]}
        joint = keras.Model(classifier.inputs, outputs, name=f"{classifier.name}_ce")
        return Defendpp(joint, classifier, None, [], [], outputs)
    taps = stage_outputs(classifier)
    stages = [f"stage{b}_out" for b in range(1, encoder_blocks + 1)]
    missing = [s for s in stages if s not in taps]
    if missing:
        have = sorted(k for k in taps if k.startswith("stage"))
        raise ValueError(f"Defend++ needs encoder taps {stages} but {classifier.name!r} has {have or 'none'}; "
                         f"lower 'encoder_blocks' to at most {len(have)}, or use a builder with named stage "
                         "outputs (resnet*, see hardened.models.stage_outputs).")
    image_size = tuple(int(d) for d in classifier.input_shape[1:3])
    channels = int(classifier.input_shape[-1])
    bottleneck = _spatial(taps[stages[-1]])
    scales = scale_sizes(image_size, bottleneck, min_size)
    num_scales = len(scales)

    # E_m for m < M-1 (read by the H modules): the deepest encoder block at scale m's resolution.
    by_size = {_spatial(taps[s]): b for b, s in enumerate(stages, start=1)}
    skip_blocks = []
    for m, size in enumerate(scales[:-1]):
        if size not in by_size:
            raise ValueError(f"Defend++ needs an encoder block at {size[0]}x{size[1]} (scale {m}) for its H module, "
                             f"but the encoder blocks are at {sorted(by_size, reverse=True)}.")
        skip_blocks.append(by_size[size])

    # The decoder is its own functional model; its inputs are the shared taps it reads: those of the
    # H modules, and the last shared block (the bottleneck, or the input of the AE-only blocks).
    used = sorted({b for b in skip_blocks if b <= shared_blocks} | {shared_blocks})
    compute_dtype = keras.config.dtype_policy().compute_dtype
    feats = {b: keras.Input(tuple(taps[f"stage{b}_out"].shape[1:]), dtype=compute_dtype, name=f"stage{b}_out")
             for b in used}
    inputs = [feats[b] for b in used]
    for b in range(shared_blocks + 1, encoder_blocks + 1):
        # AE-only copy of the classifier's stage b (same layers, fresh weights), as a nested model
        # (clone_model only re-wires a sub-graph onto an Input, not onto an intermediate tensor).
        stage = keras.Model(taps[f"stage{b - 1}_out"], taps[f"stage{b}_out"])
        start = keras.Input(tuple(feats[b - 1].shape[1:]), dtype=compute_dtype, name=f"ae_stage{b}_in")
        clone = keras.models.clone_model(stage, input_tensors=start, clone_function=_renamed("ae_"))
        feats[b] = keras.Model(clone.inputs[0], clone.outputs[0], name=f"ae_stage{b}")(feats[b - 1])

    # D_{M-1}: mirror blocks from the bottleneck up to the coarsest scale, reduced to image channels last.
    x = feats[encoder_blocks]
    width = int(x.shape[-1])
    target = scales[-1]
    n_up = 0
    while bottleneck[0] * 2 ** n_up < target[0] or bottleneck[1] * 2 ** n_up < target[1]:
        n_up += 1
    if n_up == 0:
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="decoder_top_conv1")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", name="decoder_top_out")(x)
    for i in range(1, n_up + 1):
        filters = max(width // 2 ** (i - 1), channels)
        last = i == n_up
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"decoder_top_conv{i}")(x)
        x = keras.layers.Conv2DTranspose(channels if last else max(filters // 2, channels), 3, strides=2,
                                         padding="same", activation=None if last else "relu",
                                         name=f"decoder_top_up{i}")(x)
    recon = {num_scales - 1: _out_norm(_crop_to(x, target, "decoder_top_crop"), num_scales - 1)}
    # Finer scales: I~^m = U(I~^{m+1}) + H(E_m).
    for m in range(num_scales - 2, -1, -1):
        e = feats[skip_blocks[m]]
        filters = int(e.shape[-1])
        up = DecoderUp(filters, channels, name=f"decoder_u{m}")(recon[m + 1])
        up = _crop_to(up, scales[m], f"decoder_u{m}_crop")
        high = DecoderSkip(filters, channels, name=f"decoder_h{m}")(e)
        recon[m] = _out_norm(keras.layers.Add(name=f"decoder_add{m}")([up, high]), m)
    # float32 outputs: the reconstruction losses are computed in float32 under mixed precision.
    outputs = [keras.layers.Activation("linear", dtype="float32", name=recon_key(m))(recon[m])
               for m in range(num_scales)]
    dec = keras.Model(inputs, outputs, name="defendpp_decoder")

    tap_names = [f"stage{b}_out" for b in used]
    recons = dec([taps[n] for n in tap_names])
    joint_outputs = {"logits": classifier.outputs[0], **{recon_key(m): r for m, r in enumerate(recons)}}
    joint = keras.Model(classifier.inputs, joint_outputs, name=f"{classifier.name}_defendpp")
    return Defendpp(joint, classifier, dec, tap_names, scales, joint_outputs)


def encoder_features(classifier, taps):
    """A model mapping images to the classifier's ``taps`` (the decoder's inputs)."""
    outs = stage_outputs(classifier)
    return keras.Model(classifier.inputs[0], [outs[t] for t in taps], name="defendpp_encoder_taps")


def reconstruct(classifier, decoder, images, batch_size=256):
    """Reconstructions ``[I~^0, ...]`` of ``images`` by a (possibly reloaded) classifier and decoder.

    Args:
        classifier: The classifier (its encoder taps feed the decoder).
        decoder: The decoder model (e.g. ``load_pretrained(folder / "decoder")``);
            its input names are the taps it reads.
        images: ``(N, H, W, C)`` images in [0, 1].
        batch_size: Images per forward pass (the taps of a whole test set would
            not fit in memory).

    Returns:
        List of float32 arrays, finest scale first.
    """
    feats = encoder_features(classifier, [t.name for t in decoder.inputs])  # inputs are named after the taps
    outs = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start:start + batch_size], dtype=np.float32)
        f = feats(x, training=False)
        r = decoder(list(f) if isinstance(f, (list, tuple)) else [f], training=False)
        outs.append([keras.ops.convert_to_numpy(t).astype(np.float32) for t in (r if isinstance(r, (list, tuple))
                                                                                  else [r])])
    return [np.concatenate(parts) for parts in zip(*outs)]
