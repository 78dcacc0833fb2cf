"""Gradient checkpointing of one layer call, with dropout that stays the same when recomputed."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def rematerialized_call(layer: keras.layers.Layer, inputs, **kwargs):
    """Calls `layer(inputs, **kwargs)` so that the backward pass recomputes its activations.

    Only the layer's input is kept for the backward pass; everything the layer computes
    inside is computed again when the gradient needs it (`keras.remat`: TensorFlow's
    `recompute_grad`, `jax.checkpoint`). A Transformer block then keeps one
    `[batch, seq, hidden]` tensor instead of its attention probabilities, dropout masks
    and feed-forward activations: several times less memory for about a third more
    compute. The gradients are those of a plain call, dropout included.

    Dropout needs this wrapper rather than `keras.remat` alone: a `SeedGenerator` hands
    out its state and then advances it. Drawn inside the recomputed function, the seeds
    go wrong on both backends (TensorFlow reruns the Python code after the state has
    moved on, so the backward pass would use other dropout masks than the forward pass;
    on JAX the state update escapes `jax.checkpoint`). So each generator's state is
    read once outside, the `i`-th draw inside returns `state + [0, i]` (what the
    generator itself would have returned), and the state is advanced past the draws
    afterwards, outside.

    Args:
        layer: a built layer; keyword arguments that are tensors (masks) get no gradient.
        inputs: the one tensor the gradient flows through.
        **kwargs: passed to the layer's call.

    Example:
    >>> import numpy as np, keras_llm
    >>> block = keras_llm.layers.TransformerEncoderBlock(num_heads=2, intermediate_size=32)
    >>> x = np.random.rand(2, 5, 16).astype("float32")
    >>> block.build(x.shape)
    >>> y = keras_llm.layers.rematerialized_call(block, x, training=True)
    >>> tuple(y.shape)
    (2, 5, 16)
    """
    # Keras has no public walk over nested sublayers; `_flatten_layers` is what it uses itself.
    generators = [
        sublayer.seed_generator
        for sublayer in layer._flatten_layers(include_self=True)
        if getattr(sublayer, "seed_generator", None) is not None
    ]
    # `* 1` copies the value (as `SeedGenerator.next` does), not the variable.
    starts = [generator.state.value * 1 for generator in generators]
    draws = [0] * len(generators)

    def forward(x):
        drawn = [0] * len(generators)
        for index, (generator, start) in enumerate(zip(generators, starts, strict=True)):

            def next_seed(ordered=True, index=index, start=start):
                drawn[index] += 1
                return _offset(start, drawn[index] - 1)

            generator.next = next_seed
        try:
            return layer(x, **kwargs)
        finally:
            for generator in generators:
                generator.__dict__.pop("next", None)
            draws[:] = drawn

    outputs = keras.remat(forward)(inputs)
    for generator, start, count in zip(generators, starts, draws, strict=True):
        if count:
            generator.state.assign(_offset(start, count))
    return outputs


def _offset(seed, i: int):
    dtype = keras.backend.standardize_dtype(seed.dtype)
    return seed + ops.convert_to_tensor(np.array([0, i]), dtype=dtype)
