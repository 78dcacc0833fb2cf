"""Training machinery: schedules, AdamW, distribution, step-exact checkpoints and resume."""

from keras_llm.training.distribution import distribution_scope, set_mixed_precision
from keras_llm.training.optimizers import create_adamw
from keras_llm.training.resumable import (
    LearningRateLogger,
    StepCheckpoint,
    fit_resumable,
    read_checkpoint_state,
    restore_latest,
)
from keras_llm.training.schedules import WarmupDecay

__all__ = [
    "LearningRateLogger",
    "StepCheckpoint",
    "WarmupDecay",
    "create_adamw",
    "distribution_scope",
    "fit_resumable",
    "read_checkpoint_state",
    "restore_latest",
    "set_mixed_precision",
]
