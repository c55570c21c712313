# Trainer callbacks with transformers' names: TrainerCallback (hooks), TrainerControl (what the loop
# does next) and EarlyStoppingCallback. Not the loop itself.
"""``Trainer(..., callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])``.

A callback is any object with some of the methods of :class:`TrainerCallback`
(``on_train_begin``, ``on_epoch_begin``, ``on_step_end``, ``on_log``,
``on_evaluate``, ``on_save``, ``on_epoch_end``, ``on_train_end``); each is
called as ``cb.on_x(args, state, control, **kwargs)`` and may set the flags of
``control`` (``should_training_stop`` ends the run after this step).
A callback with ``state_dict()`` / ``load_state_dict()`` is saved in each
checkpoint and restored on resume.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Dict

__all__ = ["TrainerCallback", "TrainerControl", "EarlyStoppingCallback"]


@dataclass
class TrainerControl:
    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_epoch_begin(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_step_end(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_log(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_evaluate(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_save(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_epoch_end(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass

    def on_train_end(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        pass


class EarlyStoppingCallback(TrainerCallback):
    """Stop when ``metric_for_best_model`` has not improved on the best so far (by more than
    ``early_stopping_threshold``) for ``early_stopping_patience`` evaluations in a row, as
    transformers' callback; it needs ``load_best_model_at_end=True``, a
    ``metric_for_best_model`` and an eval strategy other than "no"."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        if isinstance(early_stopping_patience, bool) or not isinstance(early_stopping_patience, int) \
                or early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be a positive integer, got {early_stopping_patience!r}")
        if not isinstance(early_stopping_threshold, (int, float)) or early_stopping_threshold < 0:
            raise ValueError(f"early_stopping_threshold must be a number >= 0, got {early_stopping_threshold!r}")
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = float(early_stopping_threshold)
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        if not args.load_best_model_at_end:
            raise ValueError("EarlyStoppingCallback requires load_best_model_at_end=True")
        if args.metric_for_best_model is None:
            raise ValueError("EarlyStoppingCallback requires metric_for_best_model to be set")
        if args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback requires an eval_strategy other than 'no'")

    def on_evaluate(self, args: Any, state: Any, control: TrainerControl, **kwargs: Any) -> None:
        metrics: Dict[str, float] = kwargs.get("metrics") or {}
        key = args.metric_for_best_model
        key = key if key.startswith("eval_") else f"eval_{key}"
        value = metrics.get(key)
        if value is None:
            raise ValueError(f"EarlyStoppingCallback: metric_for_best_model {key!r} is not among the evaluation "
                             f"metrics ({', '.join(sorted(metrics))})")
        better = operator.gt if args.greater_is_better else operator.lt
        best = state.best_metric
        if best is None or (better(value, best) and abs(value - best) > self.early_stopping_threshold):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state_dict(self) -> Dict[str, Any]:
        return {"early_stopping_patience_counter": self.early_stopping_patience_counter}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.early_stopping_patience_counter = int(state.get("early_stopping_patience_counter", 0))
