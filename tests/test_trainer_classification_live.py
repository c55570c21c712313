"""The classification Trainer live against transformers' Trainer (torch, dropout off): the recorded
comparison of scripts/record_trainer_refs.py rerun now, and the behaviours that follow from
arguments: the snippet's consistency error, best-checkpoint retention under save_total_limit,
early stopping, on scripted metrics."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from pyllm import EarlyStoppingCallback as PyEarlyStopping
from pyllm import Trainer as PyTrainer
from pyllm import TrainingArguments as PyArgs

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "record_trainer_refs.py"


def _script():
    spec = importlib.util.spec_from_file_location("record_trainer_refs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_recorded_comparison_live(tmp_path):
    from test_trainer_classification import _ref_run

    ref = _script().record()
    trainer, _ = _ref_run(tmp_path / "pyllm", ref)
    logged = [e for e in trainer.state.log_history if "loss" in e]
    np.testing.assert_allclose([e["learning_rate"] for e in logged], ref["step_lr"], rtol=1e-12)
    np.testing.assert_allclose([e["loss"] for e in logged], ref["step_loss"], rtol=2e-5, atol=2e-6)
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    np.testing.assert_allclose(evals, [e["eval_loss"] for e in ref["evals"]], rtol=1e-4)
    np.testing.assert_allclose(trainer.predict(ref["eval_rows"]).predictions, ref["final_eval_logits"], atol=2e-4)


def test_snippet_arguments_raise_in_both(tmp_path):
    kw = dict(num_train_epochs=3, per_device_train_batch_size=16, per_device_eval_batch_size=64, save_total_limit=3,
              logging_steps=10, load_best_model_at_end=True, metric_for_best_model="accuracy", seed=42)
    with pytest.raises(ValueError, match="save and eval strategy to match"):
        transformers.TrainingArguments(str(tmp_path / "hf"), eval_strategy="epoch", **kw)
    with pytest.raises(ValueError, match="save and eval strategy to match"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        PyArgs(str(tmp_path / "py"), evaluation_strategy="epoch", **kw)
    for strategy in ("steps", "epoch"):  # matching strategies are fine in both
        transformers.TrainingArguments(str(tmp_path / "hf"), eval_strategy=strategy, save_strategy=strategy,
                                       use_cpu=True, **kw)
        PyArgs(str(tmp_path / "py"), eval_strategy=strategy, save_strategy=strategy, **kw)


class Scripted:
    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self, p):
        v = self.values[self.calls]
        self.calls += 1
        return {"score": v}


def _both(tmp_path, values, callbacks_hf=(), callbacks_py=(), **kw):
    """Train the recording script's tiny model with both Trainers on scripted metrics."""
    mod = _script()
    rows, val = mod.make_rows(8, 1), mod.make_rows(4, 2)
    model_dir = mod.tiny_model(tmp_path)
    base = dict(num_train_epochs=5, per_device_train_batch_size=4, per_device_eval_batch_size=4, learning_rate=1e-3,
                eval_strategy="epoch", save_strategy="epoch", logging_steps=1, seed=1, disable_tqdm=True,
                report_to="none", metric_for_best_model="score")
    base.update(kw)

    def collate(features):
        T = max(len(f["input_ids"]) for f in features)
        b = {k: torch.tensor([f[k] + [0] * (T - len(f[k])) for f in features])
             for k in ("input_ids", "attention_mask", "token_type_ids")}
        b["labels"] = torch.tensor([f["label"] for f in features])
        return b

    hf_model = transformers.BertForSequenceClassification.from_pretrained(model_dir)
    hf = transformers.Trainer(model=hf_model, args=transformers.TrainingArguments(str(tmp_path / "hf"), use_cpu=True,
                                                                                   **base),
                              train_dataset=rows, eval_dataset=val, data_collator=collate,
                              compute_metrics=Scripted(values), callbacks=list(callbacks_hf))
    hf.train()
    from pyllm import BertForSequenceClassification

    py = PyTrainer(BertForSequenceClassification.from_pretrained(model_dir).train(),
                   PyArgs(str(tmp_path / "py"), **base), train_dataset=rows, eval_dataset=val,
                   compute_metrics=Scripted(values), callbacks=list(callbacks_py))
    py.train()
    return hf, py


def _names(d):
    return sorted(p.name for p in Path(d).glob("checkpoint-*"))


def test_best_checkpoint_survives_rotation_as_in_transformers(tmp_path):
    hf, py = _both(tmp_path, [0.3, 0.8, 0.5, 0.6, 0.7], save_total_limit=1, load_best_model_at_end=True)
    # both keep the best beside the newest while training, and only the best at the end (limit 1)
    assert _names(tmp_path / "py") == _names(tmp_path / "hf") == ["checkpoint-4"]
    assert py.state.best_metric == hf.state.best_metric == 0.8
    assert Path(py.state.best_model_checkpoint).name == Path(hf.state.best_model_checkpoint).name
    assert py.state.global_step == hf.state.global_step == 10


def test_early_stopping_as_in_transformers(tmp_path):
    values = [0.5, 0.6, 0.62, 0.6, 0.9]
    hf, py = _both(tmp_path, values, num_train_epochs=5, load_best_model_at_end=True,
                   callbacks_hf=[transformers.EarlyStoppingCallback(2, 0.05)],
                   callbacks_py=[PyEarlyStopping(2, 0.05)])
    assert py.state.global_step == hf.state.global_step == 8
    assert py.state.best_metric == hf.state.best_metric
    assert _names(tmp_path / "py") == _names(tmp_path / "hf")
