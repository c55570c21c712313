"""Training: data preparation (tokenizers, memory-mapped token files, random
blocks), the Trainer / TrainingArguments loop with atomic checkpoints and
bit-exact resume, over causal-LM token blocks or sequence-classification rows (with
compute_metrics, best-model tracking and callbacks). Not models (pyllm.models) and not the optimizer (pyllm.optim)."""

from ..tokenizers.char import CharTokenizer
from .bpe_train import train_bpe
from .callbacks import EarlyStoppingCallback, TrainerCallback, TrainerControl
from .classification import ClassificationDataset, DataCollatorWithPadding, EvalPrediction, PredictionOutput
from .data import TokenDataset, load_splits, prepare_data, read_text
from .threads import StepThreads
from .trainer import (
                      SCHEDULER_TYPES,
                      Trainer,
                      TrainerState,
                      TrainingArguments,
                      TrainingDivergedError,
                      TrainOutput,
                      get_scheduler,
)

__all__ = ["CharTokenizer", "train_bpe", "TokenDataset", "prepare_data", "load_splits", "read_text", "Trainer",
           "TrainerState", "TrainingArguments", "TrainingDivergedError", "TrainOutput", "get_scheduler",
           "SCHEDULER_TYPES", "StepThreads", "EarlyStoppingCallback", "TrainerCallback", "TrainerControl",
           "ClassificationDataset", "DataCollatorWithPadding", "EvalPrediction", "PredictionOutput"]
