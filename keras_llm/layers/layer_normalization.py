"""Layer normalization over the last axis, written so that XLA fuses it into one GPU kernel."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same arguments, weights and config) with a call that
    computes `(x - mean) * rsqrt(var + epsilon) * gamma + beta` from one centred tensor.

    Keras' own call takes the variance with `var(x)`, which centres `x` a second time, and then
    writes the output as `x * s + (beta - mean * s)`. That graph has two chains from `x` to
    the output, and XLA's GPU compiler fuses neither into one kernel. Centring once gives the
    reduce-then-broadcast "diamond" that its Triton normalization fusion emits as one kernel:
    XLA's H100 compile of a GPT-2 small decode step at batch 16 launches 142 kernels instead of
    204 (`benchmarks/gpu_compile.py`; `benchmarks/NOTES.md`). Statistics are in float32, as in
    Keras. Other axes, and `rms_scaling`, run Keras' call.

    Example:
    >>> import numpy as np
    >>> norm = LayerNormalization(epsilon=1e-5)
    >>> outputs = norm(np.array([[1.0, 2.0, 3.0]], "float32"))
    >>> np.asarray(outputs, "float64").round(4).tolist()
    [[-1.2247, 0.0, 1.2247]]
    """

    def call(self, inputs):
        last_axis_only = self.axis in ([-1], [len(inputs.shape) - 1])
        if not last_axis_only or self.rms_scaling:
            return super().call(inputs)
        x = ops.cast(inputs, "float32")
        centered = x - ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
        outputs = centered * ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, "float32")
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, "float32")
        return ops.cast(outputs, self.compute_dtype)
