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
``get_batch(batch_size, rng)`` / ``eval_batches(batch_size, max_batches)``).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple, Union

import numpy as np

from .._fileio import write_text_atomic
from ..tokenizers.files import save_tokenizer
from . import checkpoint as ckpt
from .distributed import get_world
from .threads import StepThreads

__all__ = ["TrainingArguments", "Trainer", "TrainOutput", "TrainingDivergedError", "get_scheduler",
           "SCHEDULER_TYPES"]

LOG_FILE = "log.jsonl"
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
    eval_strategy: str = "no"  # "steps": evaluate every eval_steps (and at the end)
    eval_steps: Optional[int] = None  # None: logging_steps
    max_eval_batches: Optional[int] = None  # evaluate on this many batches spread over the eval set (None: all)
    save_strategy: str = "steps"  # "steps": checkpoint every save_steps (and at the end); "no"
    save_steps: int = 500
    save_total_limit: Optional[int] = None  # keep only the newest this many checkpoints
    seed: int = 42  # seeds the batch sampler
    disable_tqdm: bool = False  # True: plain log lines instead of a progress bar

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        need(bool(self.output_dir), "output_dir must be a directory path")
        self.output_dir = os.fspath(self.output_dir)
        need(is_int(self.max_steps), f"max_steps must be an integer, got {self.max_steps!r}")
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
        for name in ("eval_strategy", "save_strategy"):
            value = getattr(self, name)
            need(value in ("no", "steps"), f"{name} must be 'no' or 'steps', got {value!r}")
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

    def __init__(self, total: int, initial: int, disable_tqdm: bool, file: TextIO):
        self.file = file
        self.bar: Any = None
        if not disable_tqdm and getattr(file, "isatty", lambda: False)():
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
        if self.bar is not None:
            self.bar.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """Trains ``model`` on ``train_dataset`` as ``args`` say (see the module
    docstring for what the model and datasets must provide). ``tokenizer`` is
    saved with every checkpoint and with :meth:`save_model`. ``optimizers``
    is ``(optimizer, None)`` to bring your own (``step()``, ``lr``
    attribute, ``state_dict()``/``load_state_dict()``)."""

    def __init__(self, model: Any, args: TrainingArguments, train_dataset: Any = None, eval_dataset: Any = None,
                 tokenizer: Any = None, optimizers: Tuple[Any, Any] = (None, None), log_file: Optional[TextIO] = None):
        if not isinstance(args, TrainingArguments):
            raise ValueError(f"args must be TrainingArguments, got {type(args).__name__}")
        for method in ("forward_backward", "loss", "zero_grad", "named_parameters", "save_pretrained"):
            if not callable(getattr(model, method, None)):
                raise ValueError(f"the model ({type(model).__name__}) has no {method}() method: it cannot be trained")
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        if args.eval_strategy == "steps" and eval_dataset is None:
            raise ValueError("eval_strategy='steps' needs an eval_dataset")
        if optimizers[1] is not None:
            raise ValueError("custom learning-rate schedulers are not supported: use lr_scheduler_type")
        self.model = model
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.tokenizer = tokenizer
        self.optimizer = optimizers[0]
        self.state = TrainerState()
        # thread counts per optimizer step and per evaluation batch (see threads.py)
        self._step_threads = StepThreads()
        self._eval_threads = StepThreads()
        self.out = log_file if log_file is not None else sys.stderr
        # under mpirun: this rank's place; batches, gradients and evaluation are shared out (distributed.py)
        self.world = get_world()
        for ds, what in ((train_dataset, "training"), (eval_dataset, "evaluation")):
            if ds is not None:
                self._check_dataset(ds, what)

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

    def evaluate(self, eval_dataset: Any = None) -> Dict[str, float]:
        """Mean loss over the eval set (or ``max_eval_batches`` batches spread
        over it) and its perplexity: ``{"eval_loss", "perplexity"}``."""
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if ds is None:
            raise ValueError("evaluate needs an eval_dataset")
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

    def _fill_checkpoint(self, d: Path, rng: np.random.Generator) -> None:
        self.model.save_pretrained(str(d))
        if self.tokenizer is not None:
            save_tokenizer(self.tokenizer, d)
        ckpt.save_optimizer_state(self.optimizer.state_dict(), d)
        state = dataclasses.asdict(self.state)
        state["rng_state"] = rng.bit_generator.state
        (d / ckpt.TRAINING_ARGS_FILE).write_text(json.dumps(self.args.to_dict(), indent=2))
        (d / ckpt.TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1))

    def _save_checkpoint(self, rng: np.random.Generator) -> Path:
        step = self.state.global_step
        if not self.world.is_main:
            return Path(self.args.output_dir) / f"{ckpt.PREFIX}-{step}"
        try:
            path = ckpt.write_checkpoint(self.args.output_dir, step, lambda d: self._fill_checkpoint(d, rng))
        except OSError as e:
            last = ckpt.last_checkpoint(self.args.output_dir)
            keep = f"the last complete checkpoint is {last}" if last else "no complete checkpoint exists"
            raise OSError(e.errno, f"could not write the checkpoint of step {step} ({e.strerror or e}); "
                                   f"nothing partial was left behind and {keep}") from e
        ckpt.rotate_checkpoints(self.args.output_dir, self.args.save_total_limit)
        return path

    def _load_checkpoint(self, path: Path) -> np.random.Generator:
        state_file = path / ckpt.TRAINER_STATE_FILE
        if not state_file.is_file():
            raise ValueError(f"{path} is not a checkpoint: it has no {ckpt.TRAINER_STATE_FILE}")
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
        self.create_optimizer()
        self.optimizer.load_state_dict(ckpt.load_optimizer_state(path))
        raw = json.loads(state_file.read_text())
        names = {f.name for f in dataclasses.fields(TrainerState)}
        self.state = TrainerState(**{k: v for k, v in raw.items() if k in names})
        block = getattr(self.train_dataset, "block_size", None)
        if self.state.block_size is not None and block is not None and block != self.state.block_size:
            raise ValueError(f"checkpoint {path} was trained on blocks of {self.state.block_size} tokens; the "
                             f"training data here has block_size={block}")
        if self.state.rng_state is None:
            raise ValueError(f"checkpoint {path} has no sampler state")
        return _rng_from_state(self.state.rng_state)

    # config fields that do not change the computation pyllm runs (dropout is not applied; init is done)
    _UNCHECKED_CONFIG = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range")

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
        if not self.world.distributed:
            return self._train(resume_from_checkpoint)
        try:
            return self._train(resume_from_checkpoint)
        except Exception as e:  # noqa: BLE001 - one rank's error must end the job, not hang the other ranks
            self.world.abort(f"rank {self.world.rank} of {self.world.size}: {type(e).__name__}: {e}")
            raise

    def _start(self, resume: Optional[Path]) -> np.random.Generator:
        """The run's first state (a new one, or the checkpoint's): the sampler, the optimizer, the log."""
        a, w = self.args, self.world
        out_dir = Path(a.output_dir)
        if w.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_leftovers(out_dir)
        if w.distributed:
            w.check_same(self._job_description(resume), "training jobs")
        if resume is not None:
            # rank 0 reads the checkpoint; the others receive its weights and states
            loaded = w.run_on_main(lambda: self._load_checkpoint(resume).bit_generator.state,
                                   f"reading checkpoint {resume}")
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

    def _job_description(self, resume: Optional[Path]) -> Dict[str, Any]:
        """What must be equal on every rank: arguments, model configuration and size, data, resume point."""
        cfg = getattr(self.model, "config", None)
        data = {}
        for key, ds in (("train", self.train_dataset), ("eval", self.eval_dataset)):
            if ds is not None:
                data[key] = _dataset_fingerprint(ds)
        return {"args": self.args.to_dict(), "model": type(self.model).__name__,
                "config": cfg.to_dict() if hasattr(cfg, "to_dict") else repr(cfg),
                "parameters": sum(int(p.size) for _, p in self.model.named_parameters()),
                "data": data, "resume": None if resume is None else resume.name}

    def _share_weights(self) -> None:
        """Rank 0's weights, optimizer state and trainer state on every rank (a new run's seeded
        initialisation or a checkpoint's), so all ranks start from the same point."""
        w = self.world
        flat = _flat_parameters(self.model)
        if flat is not None:
            w.broadcast_(flat, "sharing the weights")
        else:
            for _, p in self.model.named_parameters():
                w.broadcast_(p, "sharing the weights")
        opt = w.broadcast_object(self.optimizer.state_dict() if w.is_main else None, "sharing the optimizer state")
        if not w.is_main:
            self.optimizer.load_state_dict(opt)
            if hasattr(self.model, "reset"):
                self.model.reset()  # weights changed under the model: its inference runtime must rebuild
        self.state = w.broadcast_object(self.state, "sharing the trainer state")

    def _train(self, resume_from_checkpoint: Union[None, bool, str, "os.PathLike[str]"]) -> TrainOutput:
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
                if a.eval_strategy == "steps" and (st.global_step % eval_every == 0 or last):
                    metrics = self.evaluate()
                    self._log({"step": st.global_step, "epoch": round(st.epoch, 4), **metrics})
                    if self.world.is_main:
                        progress.write(f"step {st.global_step}/{total}  eval loss {metrics['eval_loss']:.4f}  "
                                   f"perplexity {metrics['perplexity']:.2f}")
                    t_last = time.perf_counter()  # evaluation time is not training throughput
                if a.save_strategy == "steps" and (st.global_step % a.save_steps == 0 or last):
                    self._save_checkpoint(rng)
                    t_last = time.perf_counter()
        finally:
            progress.close()
        train_loss = run_loss / max(run_steps, 1)
        return TrainOutput(self.state.global_step, train_loss, {"train_loss": train_loss})

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
            grads = _flat_gradients(self.model)
            if grads is not None:
                w.allreduce_sum_(grads)
            else:
                for _, g in self.model.named_gradients():
                    w.allreduce_sum_(g)
            losses = [v / w.size for v in w.sum(losses, "summing the losses")]
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

    def _diverged(self, what: str, step: int, micro: Optional[int], accum: int) -> str:
        where = f" (micro-batch {micro + 1} of {accum})" if micro is not None and accum > 1 else ""
        last = ckpt.last_checkpoint(self.args.output_dir)
        keep = (f"the last good checkpoint is {last}; resume from it (perhaps with a lower learning rate or "
                "max_grad_norm)") if last else "no checkpoint was written yet"
        return f"training stopped at step {step}{where}: {what}. No weight was updated by this step; {keep}."
