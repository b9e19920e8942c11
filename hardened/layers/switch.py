"""Hierarchical random switching (Wang et al., 2019): one block of N channels."""

import keras
from keras import ops

from hardened._backend import concrete_int
from hardened.layers.stochastic import RandomizedLayer, _walk, randomized_layers


@keras.saving.register_keras_serializable(package="hardened")
class RandomSwitch(RandomizedLayer):
    """N parallel channels of the same structure; one is active per forward pass.

    The active channel is drawn from a `keras.random.SeedGenerator` on every
    call, in training and at inference, and applies to the whole batch (one
    path per run, as in the paper). ``fixed_path`` pins one channel: used in
    bottom-up training of the blocks above, and for fixed-randomness attacks.

    Args:
        branches: List of layers (or models) with the same input and output
            shapes. Give each an explicit, distinct name: weight keys of
            saved checkpoints come from them.
        seed: Seed of the switch.
        fixed_path: ``None`` (random) or the index of the channel to use.
    """

    def __init__(self, branches, seed=None, fixed_path=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        branches = [
            b if isinstance(b, keras.layers.Layer) else keras.saving.deserialize_keras_object(b)
            for b in branches
        ]
        if len(branches) < 1:
            raise ValueError("RandomSwitch needs at least one branch.")
        names = [b.name for b in branches]
        if len(set(names)) != len(names):
            raise ValueError(f"RandomSwitch branches need distinct names, got {names}.")
        self.branches = branches
        self.fixed_path = None
        self.set_path(fixed_path)

    @property
    def num_branches(self):
        return len(self.branches)

    def set_path(self, index):
        """Pin the active channel (``None`` to switch at random again)."""
        if index is not None and not 0 <= int(index) < len(self.branches):
            raise ValueError(
                f"RandomSwitch '{self.name}': path must be in [0, {len(self.branches)}), got {index!r}."
            )
        self.fixed_path = None if index is None else int(index)

    def build(self, input_shape):
        for branch in self.branches:
            if not branch.built:
                branch.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        if self.fixed_path is not None or not self.randomness or len(self.branches) == 1:
            return self.branches[self.fixed_path or 0](inputs, training=training)
        # Not keras.random.randint: on JAX its draws from consecutive seed
        # states are strongly correlated (measured: 9 of 10 draws equal).
        n = len(self.branches)
        u = keras.random.uniform((1,), seed=self.seed_generator)[0]
        index = ops.minimum(ops.cast(ops.floor(u * n), "int32"), n - 1)
        eager = concrete_int(index)
        if eager is not None:  # run one branch directly; tracing all N each call is slow
            return self.branches[eager](inputs, training=training)
        if keras.backend.backend() == "jax" and self._branches_are_random():
            # Random layers inside lax.switch branches would update their seed
            # state inside the branch and leak tracers under jit: run every
            # branch (all seed states advance) and select one output instead.
            outputs = ops.stack([b(inputs, training=training) for b in self.branches])
            return ops.take(outputs, index, axis=0)
        fns = [lambda x, b=b: b(x, training=training) for b in self.branches]
        return ops.switch(index, fns, inputs)

    def _branches_are_random(self):
        return any(randomized_layers(b) or any(isinstance(layer, keras.layers.Dropout) for layer in _walk(b))
                   for b in self.branches)

    def compute_output_shape(self, input_shape):
        return self.branches[0].compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "branches": [keras.saving.serialize_keras_object(b) for b in self.branches],
            "fixed_path": self.fixed_path,
        })
        return config
