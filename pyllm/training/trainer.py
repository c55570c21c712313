# The training loop with transformers' names: TrainingArguments, Trainer, learning-rate schedules,
# checkpoints that resume bit-exactly. Not a model: any object with the training protocol below.
"""``Trainer(model, args=TrainingArguments(...), train_dataset=..., eval_dataset=...)``.

The model protocol (what :class:`pyllm.GPT2LMHeadModel` provides):
``forward_backward(input_ids, labels) -> float`` (mean loss, gradients added
to the accumulated ones), ``loss(input_ids, labels) -> float``,
``zero_grad()``, ``named_parameters()`` (live numpy views), ``config``,
``save_pretrained(dir)`` and ``type(model).from_pretrained(dir)``; the
default optimizer, :class:`pyllm.AdamW`, also needs ``flat_buffers()``.
Datasets are :class:`pyllm.training.TokenDataset` (or anything with its
``get_batch(batch_size, rng)`` / ``eval_batches(batch_size, max_batches)``),
or, for sequence classifiers (:class:`pyllm.BertForSequenceClassification`),
rows of texts or token ids with labels (see
:mod:`pyllm.training.classification`): then an epoch is one pass over the
rows in a seeded shuffled order, ``compute_metrics`` and the best-model
arguments apply, and ``evaluate`` / ``predict`` work as in transformers.

One optimizer step: ``gradient_accumulation_steps`` micro-batches drawn from
one seeded ``numpy`` generator, gradients averaged over them, clipped to
``max_grad_norm``, then AdamW at the scheduled learning rate. Everything the
next step depends on (weights, AdamW moments and step count, the generator's
state, the step, the unlogged loss sum) goes into each checkpoint, so a run
resumed from ``checkpoint-N`` logs exactly the losses of an uninterrupted run
(on a pinned thread count: see below).

Threads: each optimizer step (and each evaluation batch) runs all its
kernels on one thread count, all threads or one, whichever has lately cost
less per token (:class:`pyllm.training.StepThreads`; on a machine whose other
cores are busy one thread can be several times faster). The losses do not
depend on it, some gradient sums do in their last bits; pin the count with
``pyllm.set_num_threads(n, adaptive=False)`` for runs that repeat bit for bit.

>>> args = TrainingArguments("out", max_steps=2000, per_device_train_batch_size=16,
...                          learning_rate=1e-3, warmup_steps=100, lr_scheduler_type="cosine",
...                          eval_strategy="steps", eval_steps=250, save_steps=250)  # doctest: +SKIP
>>> Trainer(model, args, train_dataset=train, eval_dataset=val, tokenizer=tok).train()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple, Union

import numpy as np

from .._fileio import write_text_atomic
from ..tokenizers.files import save_tokenizer
from . import checkpoint as ckpt
from .callbacks import TrainerControl
from .classification import (
    ClassificationDataset,
    DataCollatorWithPadding,
    EvalPrediction,
    PredictionOutput,
    batches_of,
    epoch_order,
    pad_features,
)
from .distributed import get_world
from .threads import StepThreads

__all__ = ["TrainingArguments", "Trainer", "TrainOutput", "TrainingDivergedError", "get_scheduler",
           "SCHEDULER_TYPES", "STRATEGIES"]

LOG_FILE = "log.jsonl"
STRATEGIES = ("no", "steps", "epoch")
SCHEDULER_TYPES = ("linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup")


class TrainingDivergedError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped
    before the optimizer step, and no checkpoint was written after it."""


# ---- learning-rate schedules: transformers' get_scheduler lambdas (factor of the base lr at an optimizer step)

def get_scheduler(name: str, num_warmup_steps: int, num_training_steps: int,
                  **kwargs: Any) -> Callable[[int], float]:
    """The factor multiplying the base learning rate at optimizer step ``s``
    (0-based), as transformers' schedules passed to ``torch.optim.lr_scheduler.LambdaLR``:
    linear warmup ``s / warmup``, then ``linear`` decay to 0, ``cosine``
    (half a period to 0; ``num_cycles`` changes it), ``cosine_with_min_lr``
    (to ``min_lr_rate``, default 0.1), ``constant_with_warmup``, or
    ``constant`` (1, no warmup).

    >>> f = get_scheduler("cosine", 10, 110)
    >>> f(0), f(5), f(10), round(f(60), 6), f(110)
    (0.0, 0.5, 1.0, 0.5, 0.0)
    """
    if name not in SCHEDULER_TYPES:
        raise ValueError(f"lr_scheduler_type {name!r} is not supported; supported: {', '.join(SCHEDULER_TYPES)}")
    warmup, total = int(num_warmup_steps), int(num_training_steps)
    cycles = float(kwargs.pop("num_cycles", 0.5))
    min_rate = float(kwargs.pop("min_lr_rate", 0.1 if name == "cosine_with_min_lr" else 0.0))
    if kwargs:
        raise ValueError(f"unexpected lr_scheduler_kwargs for {name}: {', '.join(sorted(kwargs))}")

    def factor(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if name == "constant_with_warmup":
            return 1.0
        progress = float(step - warmup) / float(max(1, total - warmup))
        if name == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        f = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
        if name == "cosine_with_min_lr":
            f = f * (1.0 - min_rate) + min_rate
        return max(0.0, f)

    return factor


# ---- arguments and state

@dataclass
class TrainingArguments:
    """transformers' ``TrainingArguments`` names and defaults, for the ones a
    CPU trainer of causal LMs uses."""

    output_dir: str  # checkpoints, the loss log and (save_model) the final model go here
    max_steps: int = -1  # optimizer steps; > 0 overrides num_train_epochs
    num_train_epochs: float = 3.0  # an epoch is as many random blocks as the training split holds
    per_device_train_batch_size: int = 8  # blocks per micro-batch
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    learning_rate: float = 5e-5  # the peak, reached after warmup
    weight_decay: float = 0.0  # AdamW's decoupled decay (matrices and embeddings only)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0  # clip the global gradient norm to this (0: no clipping)
    lr_scheduler_type: str = "linear"  # linear, cosine, cosine_with_min_lr, constant, constant_with_warmup
    lr_scheduler_kwargs: Dict[str, Any] = field(default_factory=dict)  # num_cycles, min_lr_rate
    warmup_steps: int = 0  # linear warmup from 0; overrides warmup_ratio when > 0
    warmup_ratio: float = 0.0  # warmup as a fraction of the total steps
    logging_steps: int = 500  # log the mean loss of the last logging_steps steps
    logging_first_step: bool = False
    logging_strategy: str = "steps"  # "steps": every logging_steps; "epoch": at each epoch's end; "no"
    eval_strategy: str = "no"  # "steps": every eval_steps (causal LMs: and at the end); "epoch"; "no"
    eval_steps: Optional[int] = None  # None: logging_steps
    max_eval_batches: Optional[int] = None  # evaluate on this many batches spread over the eval set (None: all)
    save_strategy: str = "steps"  # "steps": checkpoint every save_steps (and at the end); "epoch"; "no"
    save_steps: int = 500
    save_total_limit: Optional[int] = None  # keep only the newest this many checkpoints (and the best one)
    load_best_model_at_end: bool = False  # after training, load the checkpoint with the best metric
    metric_for_best_model: Optional[str] = None  # e.g. "accuracy" or "eval_accuracy"; "loss" with load_best
    greater_is_better: Optional[bool] = None  # None: False for metrics ending in "loss", else True
    seed: int = 42  # seeds the batch sampler
    disable_tqdm: bool = False  # True: plain log lines instead of a progress bar
    report_to: Any = "none"  # no integrations: only "none" (or None / [])
    evaluation_strategy: Optional[str] = None  # the deprecated spelling of eval_strategy

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        need(bool(self.output_dir), "output_dir must be a directory path")
        if self.evaluation_strategy is not None:
            if self.eval_strategy not in ("no", self.evaluation_strategy):
                raise ValueError(f"evaluation_strategy={self.evaluation_strategy!r} and eval_strategy="
                                 f"{self.eval_strategy!r} disagree: set eval_strategy only")
            warnings.warn("evaluation_strategy is deprecated: use eval_strategy", FutureWarning, stacklevel=3)
            self.eval_strategy = self.evaluation_strategy
            self.evaluation_strategy = None
        need(self.report_to in (None, "none", [], ()), f"report_to={self.report_to!r}: pyllm reports to no "
             "integration; leave it 'none'")
        self.output_dir = os.fspath(self.output_dir)
        need(is_int(self.max_steps), f"max_steps must be an integer, got {self.max_steps!r}")
        need(isinstance(self.num_train_epochs, (int, float)) and not isinstance(self.num_train_epochs, bool),
             f"num_train_epochs must be a number, got {self.num_train_epochs!r}")
        need(self.max_steps > 0 or self.num_train_epochs > 0,
             "set max_steps > 0 or num_train_epochs > 0: there is nothing to train")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be a positive integer, got {v!r}")
        need(self.eval_steps is None or (is_int(self.eval_steps) and self.eval_steps >= 1),
             f"eval_steps must be a positive integer, got {self.eval_steps!r}")
        need(self.max_eval_batches is None or (is_int(self.max_eval_batches) and self.max_eval_batches >= 1),
             f"max_eval_batches must be a positive integer or None, got {self.max_eval_batches!r}")
        need(self.save_total_limit is None or (is_int(self.save_total_limit) and self.save_total_limit >= 1),
             f"save_total_limit must be a positive integer or None, got {self.save_total_limit!r}")
        for name in ("learning_rate", "weight_decay", "adam_epsilon", "max_grad_norm"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"{name} must be a finite number >= 0, "
                 f"got {v!r}")
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and 0 <= v < 1, f"{name} must be in [0, 1), got {v!r}")
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0,
             f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        need(self.lr_scheduler_type in SCHEDULER_TYPES,
             f"lr_scheduler_type {self.lr_scheduler_type!r} is not supported; supported: {', '.join(SCHEDULER_TYPES)}")
        for name in ("eval_strategy", "save_strategy", "logging_strategy"):
            value = getattr(self, name)
            need(value in STRATEGIES, f"{name} must be one of {', '.join(map(repr, STRATEGIES))}, got {value!r}")
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        need(self.metric_for_best_model is None or isinstance(self.metric_for_best_model, str),
             f"metric_for_best_model must be a metric name, got {self.metric_for_best_model!r}")
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.load_best_model_at_end:  # transformers' consistency checks
            if self.eval_strategy != self.save_strategy:
                raise ValueError("load_best_model_at_end requires the save and eval strategy to match, but found "
                                 f"eval_strategy={self.eval_strategy!r} and save_strategy={self.save_strategy!r}")
            every = self.eval_steps or self.logging_steps
            if self.eval_strategy == "steps" and self.save_steps % every != 0:
                raise ValueError("load_best_model_at_end requires the saving steps to be a round multiple of the "
                                 f"evaluation steps, but found save_steps={self.save_steps}, which is not a round "
                                 f"multiple of eval_steps={every}")
        need(is_int(self.seed), f"seed must be an integer, got {self.seed!r}")
        get_scheduler(self.lr_scheduler_type, 0, 1, **dict(self.lr_scheduler_kwargs))  # checks the kwargs

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def get_warmup_steps(self, num_training_steps: int) -> int:
        return self.warmup_steps if self.warmup_steps > 0 else math.ceil(num_training_steps * self.warmup_ratio)


@dataclass
class TrainerState:
    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    log_history: List[Dict[str, Any]] = field(default_factory=list)
    loss_sum: float = 0.0  # losses of the steps since the last log entry
    loss_steps: int = 0
    rng_state: Optional[Dict[str, Any]] = None  # the batch sampler's bit generator state
    tokens_seen: int = 0
    block_size: Optional[int] = None  # tokens per training sequence (a resumed run must keep it)
    best_metric: Optional[float] = None  # the best metric_for_best_model value so far
    best_global_step: Optional[int] = None  # the step that reached it
    best_model_checkpoint: Optional[str] = None  # the checkpoint of that step, once written
    num_train_epochs: int = 0  # epochs the loop runs (classification)
    sampler_seed: Optional[int] = None  # epoch e's row order is epoch_order(sampler_seed, e, n)
    model_rng_state: Optional[Dict[str, Any]] = None  # the model's dropout generator (model.get_rng_state)
    model_rng_states: Optional[List[Dict[str, Any]]] = None  # under mpirun: every rank's, in rank order
    callback_states: Dict[str, Any] = field(default_factory=dict)  # callbacks with state_dict()
    train_samples: Optional[int] = None  # rows in the training set (a resumed run must keep it)


@dataclass
class TrainOutput:
    global_step: int
    training_loss: float  # mean loss over the steps this call ran
    metrics: Dict[str, float]


def _rng_from_state(state: Dict[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator")
    bitgen_cls = getattr(np.random, str(name), None)
    if bitgen_cls is None:
        raise ValueError(f"checkpoint: unknown bit generator {name!r}")
    bitgen = bitgen_cls()
    bitgen.state = state
    return np.random.Generator(bitgen)


def _flat_parameters(model: Any) -> Optional[np.ndarray]:
    fb = getattr(model, "flat_buffers", None)
    return fb()[0] if callable(fb) else None


def _flat_gradients(model: Any) -> Optional[np.ndarray]:
    fb = getattr(model, "flat_buffers", None)
    return fb()[1] if callable(fb) else None


def _dataset_fingerprint(ds: Any) -> Dict[str, Any]:
    """Size, block size and a hash of a spread sample of a token dataset (cheap on a memory map)."""
    out: Dict[str, Any] = {"type": type(ds).__name__, "block_size": getattr(ds, "block_size", None)}
    tokens = getattr(ds, "tokens", None)
    if tokens is not None:
        n = int(tokens.size)
        pick = np.linspace(0, max(n - 1, 0), min(n, 65536)).astype(np.int64)
        out["tokens"] = n
        out["sample_sha256"] = hashlib.sha256(np.asarray(tokens[pick], dtype=np.int64).tobytes()).hexdigest()
    elif isinstance(ds, ClassificationDataset) and ds.features is not None:
        h = hashlib.sha256()
        for ids in ds.features["input_ids"]:
            h.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
        if ds.labels is not None:
            h.update(np.ascontiguousarray(ds.labels).tobytes())
        out["rows"] = len(ds)
        out["sample_sha256"] = h.hexdigest()
    else:
        try:
            out["len"] = len(ds)
        except TypeError:
            pass
    return out


def _finite(x: float) -> bool:
    return math.isfinite(x)


class _Progress:
    """tqdm on a terminal when installed and wanted, else a plain line per log entry."""

    def __init__(self, total: int, initial: int, disable_tqdm: bool, file: TextIO, quiet: bool = False):
        self.file = file
        self.quiet = quiet  # another rank than 0: nothing is shown
        self.bar: Any = None
        if not disable_tqdm and not quiet and getattr(file, "isatty", lambda: False)():
            try:
                from tqdm.auto import tqdm  # type: ignore[import-untyped]

                self.bar = tqdm(total=total, initial=initial, file=file, dynamic_ncols=True, unit="step")
            except ImportError:
                self.bar = None
        self.total = total

    def update(self, postfix: Dict[str, str]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def write(self, line: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """Trains ``model`` on ``train_dataset`` as ``args`` say (see the module
    docstring for what the model and datasets must provide). ``tokenizer`` (or
    transformers 5's ``processing_class``) is saved with every checkpoint and with
    :meth:`save_model`. ``optimizers`` is ``(optimizer, None)`` to bring your own
    (``step()``, ``lr`` attribute, ``state_dict()``/``load_state_dict()``).

    Sequence classification: datasets of rows (a list of dicts, a dict of columns, a
    pandas DataFrame, a ``datasets.Dataset``; see :mod:`pyllm.training.classification`),
    texts tokenized once with ``tokenizer`` and padded per batch by ``data_collator``
    (default :class:`DataCollatorWithPadding`), each epoch one pass over the rows in a
    seeded shuffled order; ``compute_metrics(EvalPrediction)`` adds ``eval_``-prefixed
    metrics; ``callbacks`` such as :class:`EarlyStoppingCallback`."""

    def __init__(self, model: Any, args: Optional[TrainingArguments] = None, train_dataset: Any = None,
                 eval_dataset: Any = None, tokenizer: Any = None, optimizers: Tuple[Any, Any] = (None, None),
                 log_file: Optional[TextIO] = None, data_collator: Any = None,
                 compute_metrics: Optional[Callable[[EvalPrediction], Dict[str, float]]] = None,
                 callbacks: Optional[List[Any]] = None, processing_class: Any = None):
        if args is None:
            args = TrainingArguments("trainer_output")
        if not isinstance(args, TrainingArguments):
            raise ValueError(f"args must be TrainingArguments, got {type(args).__name__}")
        for method in ("forward_backward", "loss", "zero_grad", "named_parameters", "save_pretrained"):
            if not callable(getattr(model, method, None)):
                raise ValueError(f"the model ({type(model).__name__}) has no {method}() method: it cannot be trained")
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        if args.eval_strategy != "no" and eval_dataset is None:
            raise ValueError(f"eval_strategy={args.eval_strategy!r} needs an eval_dataset")
        if optimizers[1] is not None:
            raise ValueError("custom learning-rate schedulers are not supported: use lr_scheduler_type")
        if tokenizer is not None and processing_class is not None and tokenizer is not processing_class:
            raise ValueError("pass tokenizer= or processing_class=, not both")
        if compute_metrics is not None and not callable(compute_metrics):
            raise ValueError("compute_metrics must be a function of an EvalPrediction")
        self.model = model
        self.args = args
        self.tokenizer = tokenizer if tokenizer is not None else processing_class
        self.processing_class = self.tokenizer
        self.optimizer = optimizers[0]
        self.compute_metrics = compute_metrics
        self.callbacks: List[Any] = list(callbacks or [])
        self.control = TrainerControl()
        self.state = TrainerState()
        # thread counts per optimizer step and per evaluation batch (see threads.py)
        self._step_threads = StepThreads()
        self._eval_threads = StepThreads()
        self.out = log_file if log_file is not None else sys.stderr
        # under mpirun: this rank's place; batches, gradients and evaluation are shared out (distributed.py)
        self.world = get_world()
        # causal LMs train on TokenDataset blocks; anything else is rows of a classification dataset
        self.classification = not callable(getattr(train_dataset, "get_batch", None))
        if self.classification:
            if not callable(getattr(model, "train", None)) or not hasattr(model, "config"):
                raise ValueError(f"the model ({type(model).__name__}) is not a sequence classifier: row datasets "
                                 "train BertForSequenceClassification-like models")
            self.data_collator = data_collator if data_collator is not None else self._default_collator()
            if not callable(self.data_collator):
                raise ValueError("data_collator must be callable on a list of feature dicts")
            self.train_dataset: Any = self._rows(train_dataset, "training dataset")
            self.eval_dataset: Any = None if eval_dataset is None else self._rows(eval_dataset, "evaluation dataset")
            if not self.train_dataset.has_labels:
                raise ValueError("the training dataset has no label column (label, labels or label_ids)")
        else:
            for given, what in ((data_collator, "data_collator"), (compute_metrics, "compute_metrics"),
                                (callbacks or None, "callbacks"), (args.load_best_model_at_end or None,
                                                                   "load_best_model_at_end")):
                if given is not None:
                    raise ValueError(f"{what} applies to row (classification) datasets, not to TokenDataset blocks")
            self.data_collator = None
            self.train_dataset = train_dataset
            self.eval_dataset = eval_dataset
            for ds, what in ((train_dataset, "training"), (eval_dataset, "evaluation")):
                if ds is not None:
                    self._check_dataset(ds, what)

    def _default_collator(self) -> Any:
        if self.tokenizer is not None and callable(getattr(self.tokenizer, "pad", None)):
            return DataCollatorWithPadding(self.tokenizer)
        pad_id = int(getattr(self.model.config, "pad_token_id", 0) or 0)
        return lambda features: pad_features(features, pad_id)

    def _rows(self, data: Any, what: str) -> ClassificationDataset:
        """A checked, tokenized ClassificationDataset of ``data``."""
        cfg = self.model.config
        label2id = getattr(cfg, "label2id", None)
        names = {str(k): int(v) for k, v in label2id.items()} if isinstance(label2id, dict) else None
        ds = ClassificationDataset(data, label2id=names, num_labels=getattr(cfg, "num_labels", None), what=what)
        if ds.features is None:
            limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0) or None
            ctx = self._model_context()
            if ctx is not None:
                limit = ctx if limit is None else min(limit, ctx)
            ds.tokenize(self.tokenizer, limit)
        assert ds.features is not None
        vocab, ctx = self._model_vocab(), self._model_context()
        for i, ids in enumerate(ds.features["input_ids"]):
            if vocab is not None and max(ids) >= vocab:
                raise ValueError(f"{what} row {i}: token id {max(ids)} is beyond the model's vocab_size={vocab}")
            if ctx is not None and len(ids) > ctx:
                raise ValueError(f"{what} row {i} has {len(ids)} tokens, more than the model's "
                                 f"max_position_embeddings={ctx}: truncate it")
        return ds

    def _callback(self, event: str, **kwargs: Any) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, event, None)
            if callable(hook):
                hook(self.args, self.state, self.control, model=self.model, **kwargs)

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    # ---- checks

    def _model_vocab(self) -> Optional[int]:
        cfg = getattr(self.model, "config", None)
        v = getattr(cfg, "vocab_size", None)
        return int(v) if v is not None else None

    def _model_context(self) -> Optional[int]:
        cfg = getattr(self.model, "config", None)
        v = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        return int(v) if v is not None else None

    def _check_dataset(self, ds: Any, what: str) -> None:
        vocab = self._model_vocab()
        max_id = getattr(ds, "max_token_id", None)
        if vocab is not None and max_id is not None and max_id >= vocab:
            raise ValueError(f"the {what} data holds token id {max_id}, beyond the model's vocab_size={vocab}: "
                             "the data was tokenized with a different tokenizer than the model's")
        ctx, block = self._model_context(), getattr(ds, "block_size", None)
        if ctx is not None and block is not None and block > ctx:
            raise ValueError(f"the {what} data has block_size={block}, longer than the model's context of {ctx}")

    # ---- pieces

    def create_optimizer(self) -> Any:
        if self.optimizer is None:
            from ..optim import AdamW

            a = self.args
            self.optimizer = AdamW(self.model, lr=a.learning_rate, betas=(a.adam_beta1, a.adam_beta2),
                                   eps=a.adam_epsilon, weight_decay=a.weight_decay)
        return self.optimizer

    def num_training_steps(self) -> int:
        a = self.args
        if a.max_steps > 0:
            return a.max_steps
        return max(1, math.ceil(a.num_train_epochs * self.steps_per_epoch()))

    def steps_per_epoch(self) -> int:
        a = self.args
        if self.classification:  # one pass over the rows, as a DataLoader without drop_last
            batches = math.ceil(len(self.train_dataset) / (a.per_device_train_batch_size * self.world.size))
            return max(batches // a.gradient_accumulation_steps + int(batches % a.gradient_accumulation_steps > 0), 1)
        blocks = getattr(self.train_dataset, "num_blocks", None) or len(self.train_dataset)
        per_step = a.per_device_train_batch_size * a.gradient_accumulation_steps * self.world.size
        return max(1, math.ceil(blocks / per_step))

    def get_lr(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        total = self.num_training_steps()
        f = get_scheduler(self.args.lr_scheduler_type, self.args.get_warmup_steps(total), total,
                          **dict(self.args.lr_scheduler_kwargs))
        return self.args.learning_rate * f(step)

    def _clip(self) -> float:
        from ..optim import clip_grad_norm_

        if self.args.max_grad_norm > 0:
            return float(clip_grad_norm_(self.model, self.args.max_grad_norm))
        sq = sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)))
                 for _, g in self.model.named_gradients())
        return math.sqrt(sq)

    def _scale_grads(self, s: float) -> None:
        for _, g in self.model.named_gradients():
            g *= np.float32(s)

    def _log(self, entry: Dict[str, Any]) -> None:
        self.state.log_history.append(entry)
        if not self.world.is_main:
            return
        path = Path(self.args.output_dir) / LOG_FILE
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    # ---- evaluation

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Optional[List[str]] = None,
                 metric_key_prefix: str = "eval") -> Dict[str, float]:
        """Causal LMs: the mean loss over the eval set (or ``max_eval_batches``
        batches spread over it) and its perplexity, ``{"eval_loss", "perplexity"}``.
        Classification: ``eval_loss`` (when the rows have labels), the
        ``compute_metrics`` results prefixed with ``eval_``, and the runtime; logged
        and passed to the callbacks' ``on_evaluate``."""
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if ds is None:
            raise ValueError("evaluate needs an eval_dataset")
        if self.classification:
            rows = ds if isinstance(ds, ClassificationDataset) else self._rows(ds, "evaluation dataset")
            metrics = self._predict_rows(rows, metric_key_prefix).metrics or {}
            self._log({**metrics, "epoch": round(self.state.epoch, 4), "step": self.state.global_step})
            self._callback("on_evaluate", metrics=metrics)
            return metrics
        total, count = 0.0, 0
        w = self.world
        for i, (x, y) in enumerate(ds.eval_batches(self.args.per_device_eval_batch_size, self.args.max_eval_batches)):
            if i % w.size != w.rank:
                continue  # another rank's batch
            n = x.shape[0]
            with self._eval_threads.step(max(int(x.size), 1)):
                total += float(self.model.loss(x, y)) * n
            count += n
        if w.distributed:
            total, count_f = w.sum([total, float(count)], "summing the evaluation loss")
            count = int(count_f)
        loss = total / max(count, 1)
        ppl = math.exp(loss) if loss < 700 else math.inf
        return {"eval_loss": loss, "perplexity": ppl}

    def predict(self, test_dataset: Any, ignore_keys: Optional[List[str]] = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """Logits of every row (eval mode, batches of per_device_eval_batch_size), the labels
        when the rows have them, and metrics prefixed with ``test_`` (loss and
        ``compute_metrics``), as transformers' ``predict``."""
        if not self.classification:
            raise ValueError("predict() is for row (classification) datasets")
        rows = test_dataset if isinstance(test_dataset, ClassificationDataset) else \
            self._rows(test_dataset, "test dataset")
        return self._predict_rows(rows, metric_key_prefix)

    def _batch_inputs(self, features: List[Dict[str, Any]]) -> Dict[str, Any]:
        batch = dict(self.data_collator(features))
        if "input_ids" not in batch:
            raise ValueError(f"the data collator returned {sorted(batch)}, without input_ids")
        return batch

    def _predict_rows(self, ds: ClassificationDataset, prefix: str) -> PredictionOutput:
        """Eval-mode logits of every row; under mpirun rank r runs every N-th batch and the ranks
        exchange theirs, so every rank holds all rows in order and the same metrics."""
        model, w = self.model, self.world
        was_training = bool(getattr(model, "training", False))
        model.eval()
        start = time.perf_counter()
        done: List[Tuple[int, np.ndarray, Optional[float]]] = []  # (batch, logits, loss * rows)
        batches = batches_of(np.arange(len(ds)), self.args.per_device_eval_batch_size)
        try:
            for i, idx in enumerate(batches):
                if i % w.size != w.rank:
                    continue  # another rank's batch
                b = self._batch_inputs(ds.rows(idx))
                labels = b.get("labels")
                with self._eval_threads.step(max(int(np.asarray(b["input_ids"]).size), 1)):
                    out = model(b["input_ids"], attention_mask=b.get("attention_mask"),
                                token_type_ids=b.get("token_type_ids"), labels=labels)
                done.append((i, np.asarray(out.logits, dtype=np.float32),
                             None if labels is None else float(out.loss) * len(idx)))
        finally:
            model.train(was_training)
        if w.distributed:
            done = sorted((part for mine in w.allgather_object(done, "gathering the evaluation") for part in mine),
                          key=lambda part: part[0])
        preds = np.concatenate([logits for _, logits, _ in done], axis=0)
        losses = [loss for _, _, loss in done if loss is not None]
        label_ids = ds.labels
        metrics: Dict[str, float] = {}
        if label_ids is not None and losses:
            metrics[f"{prefix}_loss"] = sum(losses) / len(ds)  # summed in batch order, as one process does
        if self.compute_metrics is not None and label_ids is not None:
            metrics.update(self.world.run_on_main(lambda: self._metrics(preds, label_ids, prefix),
                                                  "computing the evaluation metrics"))
        runtime = time.perf_counter() - start
        metrics[f"{prefix}_runtime"] = round(runtime, 4)
        metrics[f"{prefix}_samples_per_second"] = round(len(ds) / max(runtime, 1e-9), 3)
        metrics[f"{prefix}_steps_per_second"] = round(len(batches) / max(runtime, 1e-9), 3)
        return PredictionOutput(predictions=preds, label_ids=label_ids, metrics=metrics)

    def _metrics(self, preds: np.ndarray, label_ids: np.ndarray, prefix: str) -> Dict[str, Any]:
        assert self.compute_metrics is not None
        extra = self.compute_metrics(EvalPrediction(predictions=preds, label_ids=label_ids))
        if not isinstance(extra, dict):
            raise ValueError(f"compute_metrics must return a dict of metrics, got {type(extra).__name__}")
        metrics: Dict[str, Any] = {}
        for k, v in extra.items():
            key = k if k.startswith(f"{prefix}_") else f"{prefix}_{k}"
            metrics[key] = float(v) if isinstance(v, (int, float, np.number)) else v
        return metrics

    # ---- checkpoints

    def save_model(self, output_dir: Optional[str] = None) -> Path:
        """The model (save_pretrained) and tokenizer into ``output_dir``
        (default: args.output_dir)."""
        d = Path(output_dir or self.args.output_dir)
        if not self.world.is_main:
            return d  # rank 0 writes; every rank holds the same weights
        d.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(d))
        if self.tokenizer is not None:
            save_tokenizer(self.tokenizer, d)
        return d

    def _fill_checkpoint(self, d: Path, rng: Optional[np.random.Generator]) -> None:
        self.model.save_pretrained(str(d))
        if self.tokenizer is not None:
            save_tokenizer(self.tokenizer, d)
        ckpt.save_optimizer_state(self.optimizer.state_dict(), d)
        state = dataclasses.asdict(self.state)
        if rng is not None:
            state["rng_state"] = rng.bit_generator.state
        if callable(getattr(self.model, "get_rng_state", None)):
            state["model_rng_state"] = self.model.get_rng_state()
        state["callback_states"] = {type(cb).__name__: cb.state_dict() for cb in self.callbacks
                                    if callable(getattr(cb, "state_dict", None))}
        (d / ckpt.TRAINING_ARGS_FILE).write_text(json.dumps(self.args.to_dict(), indent=2))
        (d / ckpt.TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1))

    def _save_checkpoint(self, rng: Optional[np.random.Generator]) -> Path:
        step, w = self.state.global_step, self.world
        if self.state.best_global_step == step:  # this checkpoint holds the best model
            self.state.best_model_checkpoint = str(Path(self.args.output_dir) / f"{ckpt.PREFIX}-{step}")
        if w.distributed and callable(getattr(self.model, "get_rng_state", None)):
            # each rank's dropout generator, so a resumed run draws the masks it would have drawn
            self.state.model_rng_states = w.allgather_object(self.model.get_rng_state(),
                                                             "gathering the dropout generators")
        if not w.is_main:
            return Path(self.args.output_dir) / f"{ckpt.PREFIX}-{step}"
        try:
            path = ckpt.write_checkpoint(self.args.output_dir, step, lambda d: self._fill_checkpoint(d, rng))
        except OSError as e:
            last = ckpt.last_checkpoint(self.args.output_dir)
            keep = f"the last complete checkpoint is {last}" if last else "no complete checkpoint exists"
            raise OSError(e.errno, f"could not write the checkpoint of step {step} ({e.strerror or e}); "
                                   f"nothing partial was left behind and {keep}") from e
        best = self.state.best_model_checkpoint if self.args.load_best_model_at_end or self.classification else None
        ckpt.rotate_checkpoints(self.args.output_dir, self.args.save_total_limit, protect=best)
        return path

    def _load_weights(self, path: Path) -> None:
        """Copy the weights of the checkpoint ``path`` into the model (shapes and config checked)."""
        loaded = type(self.model).from_pretrained(str(path))
        self._check_config(path, getattr(loaded, "config", None))
        mine = dict(self.model.named_parameters())
        theirs = dict(loaded.named_parameters())
        if set(mine) != set(theirs):
            extra, missing = sorted(set(theirs) - set(mine)), sorted(set(mine) - set(theirs))
            raise ValueError(f"checkpoint {path} does not fit this model: it lacks {missing[:3]} and has "
                             f"{extra[:3]} (mismatched config/checkpoint)")
        for name, value in theirs.items():
            if value.shape != mine[name].shape:
                raise ValueError(f"checkpoint {path} does not fit this model: {name} has shape {value.shape} there, "
                                 f"{mine[name].shape} here (mismatched config/checkpoint)")
        for name, value in theirs.items():
            mine[name][...] = value

    def _load_checkpoint(self, path: Path) -> Optional[np.random.Generator]:
        state_file = path / ckpt.TRAINER_STATE_FILE
        if not state_file.is_file():
            raise ValueError(f"{path} is not a checkpoint: it has no {ckpt.TRAINER_STATE_FILE}")
        self._load_weights(path)
        self.create_optimizer()
        self.optimizer.load_state_dict(ckpt.load_optimizer_state(path))
        raw = json.loads(state_file.read_text())
        names = {f.name for f in dataclasses.fields(TrainerState)}
        self.state = TrainerState(**{k: v for k, v in raw.items() if k in names})
        block = getattr(self.train_dataset, "block_size", None)
        if self.state.block_size is not None and block is not None and block != self.state.block_size:
            raise ValueError(f"checkpoint {path} was trained on blocks of {self.state.block_size} tokens; the "
                             f"training data here has block_size={block}")
        if self.classification:
            if self.state.sampler_seed is None:
                raise ValueError(f"checkpoint {path} was not written by a classification run (no sampler seed)")
            if self.state.train_samples != len(self.train_dataset):
                raise ValueError(f"checkpoint {path} was trained on {self.state.train_samples} rows; the training "
                                 f"dataset here has {len(self.train_dataset)}")
            if self.state.model_rng_state is not None and callable(getattr(self.model, "set_rng_state", None)):
                self.model.set_rng_state(self.state.model_rng_state)
            self._load_callback_states()
            return None
        if self.state.rng_state is None:
            raise ValueError(f"checkpoint {path} has no sampler state")
        return _rng_from_state(self.state.rng_state)

    def _load_callback_states(self) -> None:
        for cb in self.callbacks:
            saved = self.state.callback_states.get(type(cb).__name__)
            if saved is not None and callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(saved)

    # config fields that do not change the computation pyllm runs (dropout is not applied; init is done)
    # (problem_type: a classifier infers it at its first batch with labels; architectures: written on saving)
    _UNCHECKED_CONFIG = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range", "problem_type",
                         "architectures")

    def _check_config(self, path: Path, theirs: Any) -> None:
        """A checkpoint resumes only into a model of the same architecture: equal parameter shapes
        are not enough (n_head changes the attention, not the shapes)."""
        ours: Any = getattr(self.model, "config", None)
        if not (hasattr(ours, "to_dict") and hasattr(theirs, "to_dict")):
            return
        a, b = ours.to_dict(), theirs.to_dict()
        diff = sorted(k for k in set(a) | set(b) if k not in self._UNCHECKED_CONFIG and a.get(k) != b.get(k))
        if diff:
            said = ", ".join(f"{k}={b.get(k)!r} there, {a.get(k)!r} here" for k in diff[:3])
            raise ValueError(f"checkpoint {path} does not fit this model: {said} (mismatched config/checkpoint)")

    def _resolve_checkpoint(self, resume_from_checkpoint: Union[None, bool, str, "os.PathLike[str]"]) -> Optional[Path]:
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        if resume_from_checkpoint is True:
            last = ckpt.last_checkpoint(self.args.output_dir)
            if last is None:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} holds no checkpoint")
            return last
        p = Path(os.fspath(resume_from_checkpoint))
        if not p.is_dir():
            raise ValueError(f"checkpoint {p} is not a directory")
        return p

    # ---- the loop

    def train(self, resume_from_checkpoint: Union[None, bool, str, "os.PathLike[str]"] = None) -> TrainOutput:
        """Run to ``max_steps`` (or ``num_train_epochs``), from scratch or from
        a checkpoint (``True``: the newest in output_dir). Raises
        :class:`TrainingDivergedError` naming the step when the loss or the
        gradient norm is NaN/inf, before that step changes any weight."""
        loop = self._train_rows if self.classification else self._train_blocks
        if not self.world.distributed:
            return loop(resume_from_checkpoint)
        try:
            return loop(resume_from_checkpoint)
        except Exception as e:  # noqa: BLE001 - one rank's error must end the job, not hang the other ranks
            self.world.abort(f"rank {self.world.rank} of {self.world.size}: {type(e).__name__}: {e}")
            raise

    def _prepare_output(self, resume: Optional[Path]) -> None:
        """The output directory (rank 0's) without a partial checkpoint; every rank's job checked equal."""
        w = self.world
        if w.is_main:
            out_dir = Path(self.args.output_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_leftovers(out_dir)
        if w.distributed:
            w.check_same(self._job_description(resume), "training jobs")

    def _start(self, resume: Optional[Path]) -> np.random.Generator:
        """The run's first state (a new one, or the checkpoint's): the sampler, the optimizer, the log."""
        a, w = self.args, self.world
        out_dir = Path(a.output_dir)
        self._prepare_output(resume)
        if resume is not None:
            # rank 0 reads the checkpoint; the others receive its weights and states
            loaded = w.run_on_main(lambda: self._checkpoint_sampler(resume), f"reading checkpoint {resume}")
            rng = _rng_from_state(loaded)
            if w.is_main:
                # the log restarts from what the checkpoint knew, dropping what came after it
                write_text_atomic(out_dir / LOG_FILE, "".join(json.dumps(e) + "\n" for e in self.state.log_history))
        else:
            rng = np.random.Generator(np.random.PCG64(a.seed))
            self.state = TrainerState()
            if w.is_main:
                write_text_atomic(out_dir / LOG_FILE, "")
        self.create_optimizer()
        if w.distributed:
            self._share_weights()
        return rng

    def _checkpoint_sampler(self, resume: Path) -> Dict[str, Any]:
        rng = self._load_checkpoint(resume)
        if rng is None:
            raise ValueError(f"checkpoint {resume} has no sampler state")
        return dict(rng.bit_generator.state)

    def _job_description(self, resume: Optional[Path]) -> Dict[str, Any]:
        """What must be equal on every rank: arguments, model configuration and size, data, resume point."""
        cfg: Any = getattr(self.model, "config", None)
        data = {}
        for key, ds in (("train", self.train_dataset), ("eval", self.eval_dataset)):
            if ds is not None:
                data[key] = _dataset_fingerprint(ds)
        args = self.args.to_dict() if self.args is not None else None
        return {"args": args, "model": type(self.model).__name__,
                "config": cfg.to_dict() if hasattr(cfg, "to_dict") else repr(cfg),
                "parameters": sum(int(p.size) for _, p in self.model.named_parameters()),
                "data": data, "resume": None if resume is None else resume.name}

    def _share_weights(self) -> None:
        """Rank 0's weights, optimizer state and trainer state on every rank (a new run's seeded
        initialisation or a checkpoint's), so all ranks start from the same point."""
        w = self.world
        self._share_parameters()
        opt = w.broadcast_object(self.optimizer.state_dict() if w.is_main else None, "sharing the optimizer state")
        if not w.is_main:
            self.optimizer.load_state_dict(opt)
        self.state = w.broadcast_object(self.state, "sharing the trainer state")

    def _share_parameters(self) -> None:
        """Rank 0's weights into every rank's model."""
        w = self.world
        flat = _flat_parameters(self.model)
        if flat is not None:
            w.broadcast_(flat, "sharing the weights")
        else:
            for _, p in self.model.named_parameters():
                w.broadcast_(p, "sharing the weights")
        if not w.is_main and hasattr(self.model, "reset"):
            self.model.reset()  # weights changed under the model: its inference runtime must rebuild

    def _seed_rank_dropout(self) -> None:
        """Under mpirun, each rank's own dropout generator: the checkpoint's when it was written by as
        many ranks, else rank 0 keeps the model's and rank r > 0 takes one seeded from (seed, step, r)."""
        w, set_state = self.world, getattr(self.model, "set_rng_state", None)
        if not w.distributed or not callable(set_state):
            return
        states = self.state.model_rng_states
        if states is not None and len(states) == w.size:
            set_state(states[w.rank])
        elif w.rank > 0:
            seq = np.random.SeedSequence([int(self.args.seed), int(self.state.global_step), w.rank])
            set_state(dict(np.random.PCG64(seq).state))

    def _train_blocks(self, resume_from_checkpoint: Union[None, bool, str, "os.PathLike[str]"]) -> TrainOutput:
        """The causal-LM loop over TokenDataset blocks (one process, or one rank of several)."""
        a = self.args
        total = self.num_training_steps()
        resume = self.world.run_on_main(lambda: self._resolve_checkpoint(resume_from_checkpoint),
                                        "finding the checkpoint to resume")
        rng = self._start(resume)
        self.state.max_steps = total
        self.state.block_size = getattr(self.train_dataset, "block_size", None)
        self.model.zero_grad()

        B, accum = a.per_device_train_batch_size, a.gradient_accumulation_steps
        block = int(getattr(self.train_dataset, "block_size", 1))
        tokens_per_step = B * accum * block * self.world.size  # over all ranks
        steps_per_epoch = self.steps_per_epoch()
        start_step = self.state.global_step
        progress = _Progress(total, start_step, a.disable_tqdm or not self.world.is_main, self.out)
        t_last, tokens_last = time.perf_counter(), 0
        run_loss, run_steps = 0.0, 0
        try:
            while self.state.global_step < total:
                step = self.state.global_step  # 0-based index of this optimizer step
                lr = self.get_lr(step)
                with self._step_threads.step(tokens_per_step):  # the whole step on one thread count
                    loss, norm = self._optimizer_step(step, lr, rng)

                st = self.state
                st.global_step = step + 1
                st.epoch = st.global_step / steps_per_epoch
                st.tokens_seen += tokens_per_step
                st.loss_sum += loss
                st.loss_steps += 1
                run_loss += loss
                run_steps += 1
                tokens_last += tokens_per_step
                now = time.perf_counter()
                tps = tokens_last / max(now - t_last, 1e-9)
                progress.update({"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "tok/s": f"{tps:,.0f}"})

                last = st.global_step == total
                if st.global_step % a.logging_steps == 0 or last or (a.logging_first_step and st.global_step == 1):
                    entry = {"step": st.global_step, "epoch": round(st.epoch, 4), "loss": st.loss_sum / st.loss_steps,
                             "learning_rate": lr, "grad_norm": norm, "tokens": st.tokens_seen,
                             "tokens_per_second": round(tps, 1)}
                    self._log(entry)
                    st.loss_sum, st.loss_steps = 0.0, 0
                    t_last, tokens_last = now, 0
                    if progress.bar is None and self.world.is_main:
                        progress.write(f"step {st.global_step}/{total}  loss {entry['loss']:.4f}  lr {lr:.3e}  "
                                       f"grad norm {norm:.3f}  {tps:,.0f} tok/s")
                eval_every = a.eval_steps or a.logging_steps
                epoch_end = st.global_step % steps_per_epoch == 0
                if (a.eval_strategy == "steps" and (st.global_step % eval_every == 0 or last)) or \
                        (a.eval_strategy == "epoch" and (epoch_end or last)):
                    metrics = self.evaluate()
                    self._log({"step": st.global_step, "epoch": round(st.epoch, 4), **metrics})
                    if self.world.is_main:
                        progress.write(f"step {st.global_step}/{total}  eval loss {metrics['eval_loss']:.4f}  "
                                       f"perplexity {metrics['perplexity']:.2f}")
                    t_last = time.perf_counter()  # evaluation time is not training throughput
                if (a.save_strategy == "steps" and (st.global_step % a.save_steps == 0 or last)) or \
                        (a.save_strategy == "epoch" and (epoch_end or last)):
                    self._save_checkpoint(rng)
                    t_last = time.perf_counter()
        finally:
            progress.close()
        train_loss = run_loss / max(run_steps, 1)
        return TrainOutput(self.state.global_step, train_loss, {"train_loss": train_loss})

    def _sum_over_ranks(self, losses: List[float]) -> List[float]:
        """Under mpirun: the gradients summed over the ranks in place, and each loss's mean over them."""
        w = self.world
        grads = _flat_gradients(self.model)
        if grads is not None:
            w.allreduce_sum_(grads)
        else:
            for _, g in self.model.named_gradients():
                w.allreduce_sum_(g)
        return [v / w.size for v in w.sum(losses, "summing the losses")]

    def _optimizer_step(self, step: int, lr: float, rng: np.random.Generator) -> Tuple[float, float]:
        """Forward and backward over the step's micro-batches, clipping and the
        update; returns the mean loss and the gradient norm before clipping."""
        B, accum = self.args.per_device_train_batch_size, self.args.gradient_accumulation_steps
        w = self.world
        losses = []
        for _ in range(accum):
            # every rank draws the whole global batch from the shared generator and keeps its own rows
            x, y = self.train_dataset.get_batch(B * w.size, rng)
            if w.distributed:
                x, y = x[w.shard(0, B)], y[w.shard(0, B)]
            losses.append(float(self.model.forward_backward(x, y)))
        if w.distributed:
            losses = self._sum_over_ranks(losses)
        for micro, micro_loss in enumerate(losses):
            if not _finite(micro_loss):
                raise TrainingDivergedError(self._diverged(f"the loss is {micro_loss}", step + 1, micro, accum))
        loss = sum(losses) / accum
        if accum * w.size > 1:
            self._scale_grads(1.0 / (accum * w.size))
        norm = self._clip()
        if not _finite(norm):
            raise TrainingDivergedError(self._diverged(f"the gradient norm is {norm}", step + 1, None, accum))
        self.optimizer.lr = lr
        self.optimizer.step()
        self.model.zero_grad()
        return loss, norm

    # ---- the classification loop (transformers' Trainer over row datasets)

    def _train_rows(self, resume_from_checkpoint: Union[None, bool, str, "os.PathLike[str]"]) -> TrainOutput:
        a, w = self.args, self.world
        out_dir = Path(a.output_dir)
        n = len(self.train_dataset)
        per_epoch = self.steps_per_epoch()
        total = self.num_training_steps()
        resume = w.run_on_main(lambda: self._resolve_checkpoint(resume_from_checkpoint),
                               "finding the checkpoint to resume")
        self._prepare_output(resume)
        if resume is not None:
            # rank 0 reads the checkpoint; the others receive its weights and states (_share_weights)
            w.run_on_main(lambda: self._load_checkpoint(resume), f"reading checkpoint {resume}")
            if not w.is_main:
                self.create_optimizer()
        else:
            self.create_optimizer()
            self.state = TrainerState(sampler_seed=int(a.seed), train_samples=n)
        if w.distributed:
            self._share_weights()
            if resume is not None and not w.is_main:
                self._load_callback_states()
            self._seed_rank_dropout()
        if w.is_main:
            write_text_atomic(out_dir / LOG_FILE, "".join(json.dumps(e) + "\n" for e in self.state.log_history))
        st = self.state
        st.max_steps = total
        st.num_train_epochs = math.ceil(total / per_epoch)
        self.control = TrainerControl()
        self.model.train()
        self.model.zero_grad()
        self._callback("on_train_begin")
        progress = _Progress(total, st.global_step, a.disable_tqdm, self.out, quiet=not w.is_main)
        start, start_step = time.perf_counter(), st.global_step
        run_loss, run_steps = 0.0, 0
        saved_at = -1
        lr, norm = self.get_lr(max(st.global_step - 1, 0)), float("nan")
        B, accum = a.per_device_train_batch_size, a.gradient_accumulation_steps
        lengths = [len(ids) for ids in self.train_dataset.features["input_ids"]]
        try:
            for epoch in range(st.global_step // per_epoch, st.num_train_epochs):
                assert st.sampler_seed is not None
                # global batches of B rows per rank: each rank computes its slice (_row_step)
                batches = batches_of(epoch_order(st.sampler_seed, epoch, n), B * w.size)
                self._callback("on_epoch_begin")
                for k in range(st.global_step - epoch * per_epoch, per_epoch):
                    if st.global_step >= total:
                        break
                    micro = batches[k * accum:(k + 1) * accum]
                    lr = self.get_lr(st.global_step)
                    tokens = sum(lengths[i] for b in micro for i in b)
                    mine = sum(lengths[i] for b in micro for i in b[w.shard(0, B)])
                    with self._step_threads.step(max(mine, 1)):
                        loss, norm = self._row_step(micro, lr)
                    st.global_step += 1
                    st.epoch = epoch + (k + 1) / per_epoch
                    st.loss_sum += loss
                    st.loss_steps += 1
                    st.tokens_seen += tokens
                    run_loss += loss
                    run_steps += 1
                    progress.update({"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "epoch": f"{st.epoch:.2f}"})
                    self._callback("on_step_end")
                    if a.logging_strategy == "steps" and (st.global_step % a.logging_steps == 0 or
                                                          (a.logging_first_step and st.global_step == 1)):
                        self._log_train(lr, norm, progress, total)
                    if a.eval_strategy == "steps" and st.global_step % (a.eval_steps or a.logging_steps) == 0:
                        self._evaluate_in_training(progress, total)
                    last = st.global_step >= total
                    if a.save_strategy == "steps" and (st.global_step % a.save_steps == 0 or last):
                        self._save_checkpoint(None)
                        saved_at = st.global_step
                    if self.control.should_training_stop:
                        break
                self._callback("on_epoch_end")
                if a.logging_strategy == "epoch" and st.loss_steps:
                    self._log_train(lr, norm, progress, total)
                evaluated = a.eval_strategy == "epoch"
                if evaluated:
                    self._evaluate_in_training(progress, total)
                # (a checkpoint of this step written before this evaluation is written again, with its result)
                if a.save_strategy == "epoch" or (evaluated and saved_at == st.global_step):
                    self._save_checkpoint(None)
                    saved_at = st.global_step
                if self.control.should_training_stop or st.global_step >= total:
                    break
        finally:
            progress.close()
        if a.load_best_model_at_end and st.best_model_checkpoint is not None:
            best = Path(st.best_model_checkpoint)
            # rank 0 reads it (the checkpoints are on its disk) and hands the weights to the others
            if w.run_on_main(lambda: self._load_best(best), f"loading {best}"):
                if w.distributed:
                    self._share_parameters()
                progress.write(f"loaded the best model from {best} ({a.metric_for_best_model} {st.best_metric})")
        if a.save_total_limit == 1 and st.best_model_checkpoint is not None and w.is_main:
            # as transformers: with a limit of one, the run ends keeping only the best checkpoint
            for _, p in ckpt.list_checkpoints(out_dir):
                if p != Path(st.best_model_checkpoint):
                    ckpt.remove_dir(p)
        runtime = time.perf_counter() - start
        train_loss = run_loss / max(run_steps, 1)
        metrics = {"train_runtime": round(runtime, 4),
                   "train_samples_per_second": round((st.global_step - start_step) * B * accum / max(runtime, 1e-9), 3),
                   "train_steps_per_second": round((st.global_step - start_step) / max(runtime, 1e-9), 3),
                   "train_loss": train_loss, "epoch": round(st.epoch, 4)}
        self._log({**metrics, "step": st.global_step})
        self._callback("on_train_end")
        return TrainOutput(st.global_step, train_loss, metrics)

    def _load_best(self, best: Path) -> bool:
        if not best.is_dir():
            return False
        self._load_weights(best)
        return True

    def _row_step(self, micro: List[np.ndarray], lr: float) -> Tuple[float, float]:
        """Forward and backward over the step's batches (each loss divided by their count, as
        transformers' gradient accumulation), clipping and the AdamW update. Under mpirun a rank
        computes its slice of each batch and the gradients are summed over the ranks."""
        w, B = self.world, self.args.per_device_train_batch_size
        values: List[float] = []  # per batch: this rank's share of its mean loss, times the ranks
        accumulated = False
        for idx in micro:
            mine = idx[w.shard(0, B)] if w.distributed else idx
            if not mine.size:
                values.append(0.0)  # a short last batch that ends before this rank's slice
                continue
            # a batch's mean is the rows' mean: a rank's mean weighs rows/len(batch), times N (1 for full slices)
            weight = mine.size * w.size / idx.size
            if weight != 1.0 and accumulated:
                self._scale_grads(1.0 / weight)  # (the earlier batches' gradients, scaled back below)
            b = self._batch_inputs(self.train_dataset.rows(mine))
            if "labels" not in b:
                raise ValueError("the data collator dropped the labels")
            value = float(self.model.forward_backward(b["input_ids"], b["labels"],
                                                      attention_mask=b.get("attention_mask"),
                                                      token_type_ids=b.get("token_type_ids")))
            if weight != 1.0:
                self._scale_grads(weight)
            accumulated = True
            values.append(value * weight)
        if w.distributed:
            values = self._sum_over_ranks(values)
        for m, value in enumerate(values):
            if not _finite(value):
                raise TrainingDivergedError(self._diverged(f"the loss is {value}", self.state.global_step + 1, m,
                                                           len(micro)))
        loss = sum(values) / len(micro)
        if len(micro) * w.size > 1:
            self._scale_grads(1.0 / (len(micro) * w.size))
        norm = self._clip()
        if not _finite(norm):
            raise TrainingDivergedError(self._diverged(f"the gradient norm is {norm}", self.state.global_step + 1,
                                                       None, len(micro)))
        self.optimizer.lr = lr
        self.optimizer.step()
        self.model.zero_grad()
        return loss, norm

    def _log_train(self, lr: float, norm: float, progress: "_Progress", total: int) -> None:
        st = self.state
        entry = {"loss": st.loss_sum / st.loss_steps, "grad_norm": norm, "learning_rate": lr,
                 "epoch": round(st.epoch, 4), "step": st.global_step}
        st.loss_sum, st.loss_steps = 0.0, 0
        self._log(entry)
        self._callback("on_log", logs=entry)
        if progress.bar is None:
            progress.write(f"step {st.global_step}/{total}  epoch {st.epoch:.2f}  loss {entry['loss']:.4f}  "
                           f"lr {lr:.3e}  grad norm {norm:.3f}")

    def _evaluate_in_training(self, progress: "_Progress", total: int) -> None:
        """Evaluate, then track the best metric (transformers' order: the callbacks see the
        previous best in on_evaluate)."""
        a, st = self.args, self.state
        metrics = self.evaluate()
        shown = {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}
        progress.write(f"step {st.global_step}/{total}  epoch {st.epoch:.2f}  " +
                       "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if progress.bar is not None:
            progress.bar.set_postfix({k[len("eval_"):]: f"{v:.4f}" for k, v in shown.items()}, refresh=True)
        if a.metric_for_best_model is None:
            return
        key = a.metric_for_best_model
        key = key if key.startswith("eval_") else f"eval_{key}"
        if key not in metrics:
            raise KeyError(f"metric_for_best_model is {key!r}, which is not among the evaluation metrics "
                           f"({', '.join(sorted(metrics))}); set metric_for_best_model to one of them")
        value = float(metrics[key])
        best = st.best_metric
        if best is None or (value > best if a.greater_is_better else value < best):
            st.best_metric = value
            st.best_global_step = st.global_step

    def _diverged(self, what: str, step: int, micro: Optional[int], accum: int) -> str:
        where = f" (micro-batch {micro + 1} of {accum})" if micro is not None and accum > 1 else ""
        last = ckpt.last_checkpoint(self.args.output_dir)
        keep = (f"the last good checkpoint is {last}; resume from it (perhaps with a lower learning rate or "
                "max_grad_norm)") if last else "no checkpoint was written yet"
        return f"training stopped at step {step}{where}: {what}. No weight was updated by this step; {keep}."
