"""Training machinery: schedules, AdamW, distribution, step-exact checkpoints and resume."""

from keras_llm.training.distillation import (
    Distiller,
    distillation_loss,
    student_from_preset,
    student_from_teacher,
    uniform_layer_map,
)
from keras_llm.training.distribution import (
    STRATEGIES,
    distribution_scope,
    is_chief,
    make_strategy,
    model_parallel_distribution,
    set_mixed_precision,
)
from keras_llm.training.finetuning import (
    FinetuningConfig,
    FinetuningRun,
    define_flags,
    set_trainable_layers,
)
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
    "Distiller",
    "distillation_loss",
    "student_from_preset",
    "student_from_teacher",
    "uniform_layer_map",
    "FinetuningConfig",
    "FinetuningRun",
    "define_flags",
    "is_chief",
    "make_strategy",
    "model_parallel_distribution",
    "set_trainable_layers",
    "LearningRateLogger",
    "StepCheckpoint",
    "WarmupDecay",
    "create_adamw",
    "STRATEGIES",
    "distribution_scope",
    "fit_resumable",
    "read_checkpoint_state",
    "restore_latest",
    "set_mixed_precision",
]
