"""AdamW as BERT and GPT train with it."""

from __future__ import annotations

from collections.abc import Sequence

import keras

# LayerNorm scales/offsets, biases and embeddings' position tables get no weight decay.
NO_DECAY_NAMES = ("gamma", "beta", "bias", "output_bias")


def create_adamw(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    global_clipnorm: float | None = 1.0,
    gradient_accumulation_steps: int | None = None,
    exclude_from_weight_decay: Sequence[str] = NO_DECAY_NAMES,
) -> keras.optimizers.AdamW:
    """AdamW with decoupled weight decay on kernels only, global-norm clipping and optional
    gradient accumulation (an update every `gradient_accumulation_steps` batches)."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    optimizer.exclude_from_weight_decay(var_names=list(exclude_from_weight_decay))
    return optimizer
