"""Black-box transfer attack through a substitute model (Papernot et al., 2017)."""

import weakref

import keras
import numpy as np

from hardened.attacks import _grad
from hardened.attacks.base import Attack, register
from hardened.attacks.cw import CarliniWagnerL2
from hardened.attacks.gradient import FGSM
from hardened.attacks.losses import weighted_logits
from hardened.validation import check_images


def build_substitute(input_shape, num_classes, arch="mlp", hidden=None, seed=0):
    """Seed 000's substitutes: MLP FC1000-FC1000 (MNIST) or Conv32(5x5)-Conv32(5x5)-FC512 (CIFAR-10).

    Args:
        input_shape: ``(H, W, C)``.
        num_classes: Number of logits.
        arch: ``"mlp"`` or ``"cnn"``.
        hidden: Width of the FC layers (default 1000 for the MLP, 512 for the CNN).
        seed: Seed of the (Glorot-uniform) initialisation.

    Returns:
        An uncompiled functional `keras.Model` returning logits.
    """
    # Built with zero initialisers, then Glorot-uniform weights drawn in numpy:
    # same weights on every backend, and no per-shape compilation of JAX's RNG.
    inputs = keras.Input(tuple(input_shape), name="input")
    if arch == "mlp":
        width = 1000 if hidden is None else int(hidden)
        h = keras.layers.Flatten(name="flatten")(inputs)
        h = keras.layers.Dense(width, activation="relu", kernel_initializer="zeros", name="fc1")(h)
        h = keras.layers.Dense(width, activation="relu", kernel_initializer="zeros", name="fc2")(h)
    elif arch == "cnn":
        width = 512 if hidden is None else int(hidden)
        h = keras.layers.Conv2D(32, 5, padding="same", activation="relu", kernel_initializer="zeros",
                                name="conv1")(inputs)
        h = keras.layers.Conv2D(32, 5, padding="same", activation="relu", kernel_initializer="zeros",
                                name="conv2")(h)
        h = keras.layers.MaxPooling2D(2, name="pool")(h)
        h = keras.layers.Flatten(name="flatten")(h)
        h = keras.layers.Dense(width, activation="relu", kernel_initializer="zeros", name="fc1")(h)
    else:
        raise ValueError(f"Unknown substitute arch {arch!r}; expected 'mlp' or 'cnn'.")
    outputs = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="logits")(h)
    model = keras.Model(inputs, outputs, name=f"substitute_{arch}")
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:  # kernel: Glorot uniform over fan-in / fan-out
            receptive = int(np.prod(w.shape[:-2])) if w.ndim > 2 else 1
            fan_in, fan_out = w.shape[-2] * receptive, w.shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, size=w.shape)
        weights.append(np.asarray(w, dtype=np.float32))
    model.set_weights(weights)
    return model


@register
class Substitute(Attack):
    """Papernot's black-box attack: query labels, train a substitute, transfer.

    `fit` labels ``n_seed`` images by querying the target (labels only),
    trains the substitute, and for ``rounds - 1`` rounds doubles the set by
    Jacobian-based augmentation ``x + lambda_r * sign(d z_{O(x)} / dx)``
    (``lambda_r = lmbda * (-1)^floor(r / tau)``, the paper's periodic step),
    relabelling the new points through the target. `generate` then crafts
    FGSM or C&W on the substitute and returns those examples (evaluate them
    on the target). The target's gradients are never used.

    If `fit` was not called for this model, `generate` fits on the first
    ``n_seed`` images it is given (for a clean protocol, fit on held-out
    images first). After fitting, ``substitute_`` is the trained model and
    ``queries_`` the number of target queries.

    Args:
        n_seed: Initial labelled images (paper: 150).
        rounds: Substitute training rounds (Papernot: 6; seed 000: 5).
        lmbda: Augmentation step.
        tau: Period of the sign flip of the step.
        epochs: Training epochs per round.
        lr: Adam learning rate of the substitute.
        fit_batch_size: Training batch size.
        arch: ``"mlp"`` or ``"cnn"`` (see `build_substitute`).
        hidden: FC width of the substitute (None: the architecture's default).
        craft: ``"fgsm"`` or ``"cw"`` (C&W L2) on the substitute.
        eps: FGSM budget (linf).
        craft_params: Extra parameters of the crafting attack (e.g. C&W's
            ``steps``, ``confidence``).
        targeted: Targeted variant.
        seed: Seed of the substitute's initialisation and training order.
    """

    name = "substitute"
    norm = None
    gradient_free = True
    defaults = {"n_seed": 150, "rounds": 6, "lmbda": 0.1, "tau": 3, "epochs": 10, "lr": 1e-3,
                "fit_batch_size": 32, "arch": "mlp", "hidden": None, "craft": "fgsm", "eps": 0.3,
                "craft_params": None, "targeted": False, "seed": 0}

    def _validate(self):
        self._check_int("n_seed", low=1)
        self._check_int("rounds", low=1)
        self._check_number("lmbda", low=0.0, low_open=True)
        self._check_int("tau", low=1)
        self._check_int("epochs", low=1)
        self._check_number("lr", low=0.0, low_open=True)
        self._check_int("fit_batch_size", low=1)
        self._check_choice("arch", ("mlp", "cnn"))
        self._check_int("hidden", low=1, allow_none=True)
        craft = self._check_choice("craft", ("fgsm", "cw"))
        self._check_number("eps", low=0.0)
        extra = self.params["craft_params"]
        if extra is not None and not isinstance(extra, dict):
            self._error("craft_params", "a dict or None")
        self.params["craft_params"] = dict(extra or {})
        self.norm = "linf" if craft == "fgsm" else "l2"
        self._crafter()  # validate craft_params now
        self.substitute_ = None
        self.queries_ = 0
        self._fitted_for = None

    def _crafter(self):
        extra = self.params["craft_params"]
        if self.params["craft"] == "fgsm":
            return FGSM(eps=self.params["eps"], targeted=self.targeted, **extra)
        extra = {"binary_search_steps": 5, "steps": 200, **extra}
        return CarliniWagnerL2(targeted=self.targeted, **extra)

    def _finish(self, out, x):
        if self.params["craft"] == "fgsm":
            return super()._finish(out, x)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def fit(self, model, x_seed, batch_size=512):
        """Train the substitute against ``model`` from seed images (labels come from queries).

        Args:
            model: The target `keras.Model` (only its outputs are used).
            x_seed: Seed images ``(n, H, W, C)`` in [0, 1].
            batch_size: Rows per query / gradient call.

        Returns:
            The trained substitute model.
        """
        p = self.params
        try:
            input_shape = tuple(model.input_shape)[1:]
        except Exception:
            input_shape = None
        xs = check_images(x_seed, input_shape=input_shape, name="x_seed")
        if len(xs) == 0:
            raise ValueError("fit needs at least one seed image.")
        oracle = _grad.make_forward(model)
        queries = 0

        def label(images):
            nonlocal queries
            queries += len(images)
            return np.argmax(_fixed_chunks(oracle, batch_size, images), axis=1)

        ys = label(xs)
        num_classes = self._output_size(model, xs)
        sub = build_substitute(xs.shape[1:], num_classes, p["arch"], p["hidden"], p["seed"])
        sub.compile(optimizer=keras.optimizers.Adam(p["lr"]),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(p["seed"])
        eye = np.eye(num_classes, dtype=np.float32)
        for r in range(p["rounds"]):
            # All epochs' shuffles in one fit call (seeded order, less per-call overhead).
            order = np.concatenate([rng.permutation(len(xs)) for _ in range(p["epochs"])])
            if len(order) > p["fit_batch_size"]:  # whole batches only: one compiled train step
                order = order[: len(order) - len(order) % p["fit_batch_size"]]
            sub.fit(xs[order], ys[order], batch_size=p["fit_batch_size"], epochs=1, shuffle=False, verbose=0)
            if r == p["rounds"] - 1:
                break
            lam = p["lmbda"] * (-1) ** (r // p["tau"])
            jac = _grad.make_loss_grad(sub, weighted_logits)
            grads = _fixed_chunks(lambda a, w: jac(a, w)[1], batch_size, xs, eye[ys])
            new = np.clip(xs + lam * np.sign(grads), 0.0, 1.0).astype(np.float32)
            xs = np.concatenate([xs, new])
            ys = np.concatenate([ys, label(new)])
        self.substitute_ = sub
        self.queries_ = queries
        self._fitted_for = weakref.ref(model) if _weakrefable(model) else None
        return sub

    def generate(self, model, x, y, target=None, batch_size=128, progress=False):
        """Fit the substitute if needed (on ``x[:n_seed]``), then craft on it; see `Attack.generate`."""
        x, y, target, _ = self._prepare(model, x, y, target, batch_size)
        fitted = self._fitted_for() if self._fitted_for is not None else None
        if self.substitute_ is None or fitted is not model:
            self.fit(model, x[: self.params["n_seed"]])
        crafter = self._crafter()
        out = crafter.generate(self.substitute_, x, y, target=target, batch_size=batch_size, progress=progress)
        return self._finish(out, x)


def _fixed_chunks(fn, size, x, *args):
    """``fn`` over chunks of ``size`` rows, the last one padded: one shape to compile."""
    size = min(size, len(x))
    outs = []
    for i in range(0, len(x), size):
        parts = [x[i:i + size], *[a[i:i + size] for a in args]]
        m = len(parts[0])
        if m < size:
            parts = [np.concatenate([a, np.repeat(a[-1:], size - m, axis=0)]) for a in parts]
        outs.append(fn(*parts)[:m])
    return np.concatenate(outs)


def _weakrefable(obj):
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False
