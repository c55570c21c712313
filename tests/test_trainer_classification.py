"""The Trainer on BERT sequence classification: transformers' learning rates and losses (recorded by
scripts/record_trainer_refs.py), epochs, evaluation and compute_metrics, best-model tracking and
checkpoint rotation, early stopping, bit-exact resume, the dataset forms, bad input, the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import pyllm
from pyllm import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from pyllm.training import checkpoint as ckpt
from pyllm.training.classification import epoch_order

REFS = Path(__file__).parent / "data" / "trainer_classification_refs.json"
WORDS_POS = ["good", "great", "fine", "happy", "love"]
WORDS_NEG = ["bad", "awful", "sad", "hate", "poor"]
WORDS = WORDS_POS + WORDS_NEG + ["the", "film", "was", "a", "day", "very", "!", "."]


@pytest.fixture(autouse=True)
def pinned_threads():
    """One thread count for the whole test: gradient sums then repeat bit for bit."""
    n = pyllm.get_num_threads()
    pyllm.set_num_threads(1, adaptive=False)
    yield
    pyllm.set_num_threads(n, adaptive=True)


def tokenizer():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    return BertTokenizerFast(vocab, model_max_length=16)


def tiny(num_labels=2, dropout=0.0, seed=0, **kw):
    cfg = BertConfig.from_dict({}, **dict(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                    hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                                    num_labels=num_labels, **kw))
    return BertForSequenceClassification(cfg, seed=seed)


def text_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(WORDS_POS if label else WORDS_NEG, size=int(rng.integers(1, 4))))
        words += list(rng.choice(["the", "film", "was", "a", "day", "very"], size=int(rng.integers(0, 5))))
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + rng.choice([" !", " .", ""]), "label": label})
    return rows


def args(tmp_path, **kw):
    base = dict(num_train_epochs=2, per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=1e-3,
                logging_steps=1, eval_strategy="epoch", save_strategy="epoch", seed=7, disable_tqdm=True)
    base.update(kw)
    return TrainingArguments(str(tmp_path), **base)


def accuracy(p):
    logits, labels = p  # the tuple unpacking transformers allows
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def losses(trainer):
    return [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]


# ---- faithfulness: transformers' Trainer on the same weights, rows and row order (recorded)

def _ref_run(tmp_path, ref):
    model = BertForSequenceClassification(BertConfig.from_dict({}, **ref["config"]), seed=ref["model_seed"])
    total = sum(float(np.abs(v).astype(np.float64).sum()) for v in model.state_dict().values())
    assert total == pytest.approx(ref["initial_weight_sum"], rel=1e-12)  # the weights the reference started from
    a = TrainingArguments(str(tmp_path), disable_tqdm=True, **ref["args"])
    trainer = Trainer(model, a, train_dataset=ref["train_rows"], eval_dataset=ref["eval_rows"],
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
    trainer.train()
    return trainer, model


def test_schedule_and_losses_equal_transformers(tmp_path):
    ref = json.loads(REFS.read_text())
    for e, order in enumerate(ref["orders"]):
        assert epoch_order(ref["args"]["seed"], e, len(ref["train_rows"])).tolist() == order
    trainer, model = _ref_run(tmp_path, ref)
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert trainer.state.max_steps == ref["max_steps"] == len(ref["step_loss"])
    assert [e["step"] for e in logged] == [e["step"] for e in ref["logged"]]
    np.testing.assert_allclose([e["learning_rate"] for e in logged], ref["step_lr"], rtol=1e-12, atol=0)
    np.testing.assert_allclose([e["learning_rate"] for e in logged], [e["learning_rate"] for e in ref["logged"]],
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose([e["epoch"] for e in logged], [e["epoch"] for e in ref["logged"]], atol=1e-4)
    np.testing.assert_allclose([e["loss"] for e in logged], ref["step_loss"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose([e["grad_norm"] for e in logged], [e["grad_norm"] for e in ref["logged"]], rtol=1e-3)
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [e["step"] for e in ref["evals"]]
    np.testing.assert_allclose([e["eval_loss"] for e in evals], [e["eval_loss"] for e in ref["evals"]], rtol=1e-4)
    assert [e["eval_accuracy"] for e in evals] == [e["eval_accuracy"] for e in ref["evals"]]
    out = trainer.predict(ref["eval_rows"])
    np.testing.assert_allclose(out.predictions, np.array(ref["final_eval_logits"]), atol=2e-4)


# ---- arguments: transformers' names, defaults and consistency errors

def test_arguments_as_transformers(tmp_path):
    with pytest.warns(FutureWarning, match="evaluation_strategy is deprecated"):
        a = TrainingArguments(str(tmp_path), evaluation_strategy="epoch", save_strategy="epoch")
    assert a.eval_strategy == "epoch"
    a = TrainingArguments(str(tmp_path), eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    assert (a.metric_for_best_model, a.greater_is_better) == ("loss", False)
    a = TrainingArguments(str(tmp_path), metric_for_best_model="accuracy")
    assert a.greater_is_better is True
    with pytest.raises(ValueError, match="save and eval strategy to match"):
        TrainingArguments(str(tmp_path), eval_strategy="epoch", load_best_model_at_end=True)  # save: "steps"
    with pytest.raises(ValueError, match="round multiple"):
        TrainingArguments(str(tmp_path), eval_strategy="steps", eval_steps=3, save_steps=10,
                          load_best_model_at_end=True)
    with pytest.raises(ValueError, match="eval_strategy must be one of"):
        TrainingArguments(str(tmp_path), eval_strategy="sometimes")
    with pytest.raises(ValueError, match="needs an eval_dataset"):
        Trainer(tiny(), args(tmp_path), train_dataset=text_rows(4), tokenizer=tokenizer())


def test_issue_snippet_with_pyllm_imports(tmp_path):
    """The issue's snippet raises for its save_strategy as transformers does (see the live test);
    with save_strategy="epoch" it runs: epochs, evaluation, best model, checkpoints."""
    model_dir = tmp_path / "model"
    tiny().save_pretrained(model_dir)
    tokenizer().save_pretrained(str(model_dir))
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    train_dataset = datasets.Dataset.from_pandas(pd.DataFrame(text_rows(24)))
    eval_dataset = datasets.Dataset.from_pandas(pd.DataFrame(text_rows(10, seed=1)))
    kw = dict(output_dir=str(tmp_path / "results"), num_train_epochs=3, per_device_train_batch_size=16,
              per_device_eval_batch_size=64, save_total_limit=3, logging_steps=10, load_best_model_at_end=True,
              metric_for_best_model="accuracy", seed=42)
    with pytest.raises(ValueError, match="save and eval strategy to match"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        TrainingArguments(evaluation_strategy="epoch", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        training_args = TrainingArguments(evaluation_strategy="epoch", save_strategy="epoch", **kw)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      tokenizer=tok, compute_metrics=accuracy, log_file=open(tmp_path / "log.txt", "w"))
    out = trainer.train()
    assert out.global_step == 6  # 3 epochs of ceil(24 / 16) steps
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert [e["epoch"] for e in evals] == [1.0, 2.0, 3.0]
    assert all("eval_loss" in e for e in evals)
    best = max(evals, key=lambda e: e["eval_accuracy"])  # the first of equal values, as transformers' strict >
    assert trainer.state.best_metric == best["eval_accuracy"]
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    state = json.loads((Path(trainer.state.best_model_checkpoint).parent / "checkpoint-6" /
                        "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == trainer.state.best_model_checkpoint
    assert any("eval_accuracy" in e for e in state["log_history"])


# ---- best model, rotation, early stopping (scripted metrics make the best epoch known)

class Scripted:
    """compute_metrics returning the next value of a list: a known sequence of metrics."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, p):
        assert isinstance(p, EvalPrediction) and p.predictions.shape[1] == 2 and p.label_ids.ndim == 1
        v = self.values[self.calls]
        self.calls += 1
        return {"score": v}


def test_best_model_kept_and_loaded(tmp_path):
    tok = tokenizer()
    a = args(tmp_path, num_train_epochs=4, save_total_limit=2, load_best_model_at_end=True,
             metric_for_best_model="eval_score")
    trainer = Trainer(tiny(), a, train_dataset=text_rows(8), eval_dataset=text_rows(4, 1), tokenizer=tok,
                      compute_metrics=Scripted([0.2, 0.9, 0.5, 0.4]))
    trainer.train()
    # 2 steps an epoch; the best is epoch 2 (step 4): kept beside the newest, checkpoint-6 went instead
    assert [p.name for _, p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-8"]
    assert trainer.state.best_metric == 0.9 and trainer.state.best_global_step == 4
    best = BertForSequenceClassification.from_pretrained(tmp_path / "checkpoint-4")
    for (name, mine), (_, theirs) in zip(trainer.model.named_parameters(), best.named_parameters()):
        np.testing.assert_array_equal(mine, theirs, err_msg=name)
    last = BertForSequenceClassification.from_pretrained(tmp_path / "checkpoint-8")
    assert not np.array_equal(last.params["classifier.weight"], best.params["classifier.weight"])


def test_loss_is_lower_better(tmp_path):
    a = args(tmp_path, num_train_epochs=3, load_best_model_at_end=True)  # metric_for_best_model: loss
    trainer = Trainer(tiny(), a, train_dataset=text_rows(8), eval_dataset=text_rows(4, 1), tokenizer=tokenizer())
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_loss" in e and "step" in e][:3]
    assert trainer.state.best_metric == min(e["eval_loss"] for e in evals)


def test_early_stopping(tmp_path):
    a = args(tmp_path, num_train_epochs=10, load_best_model_at_end=True, metric_for_best_model="score")
    stop = EarlyStoppingCallback(early_stopping_patience=2, early_stopping_threshold=0.05)
    trainer = Trainer(tiny(), a, train_dataset=text_rows(8), eval_dataset=text_rows(4, 1), tokenizer=tokenizer(),
                      compute_metrics=Scripted([0.5, 0.6, 0.62, 0.6, 0.9, 0.9]), callbacks=[stop])
    out = trainer.train()
    # 0.62 beats 0.6 by less than the threshold: no improvement at epochs 3 and 4 -> stop after epoch 4
    assert out.global_step == 8 and stop.early_stopping_patience_counter == 2
    assert trainer.state.best_metric == 0.62  # best tracking itself has no threshold (as transformers)
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        Trainer(tiny(), args(tmp_path / "b"), train_dataset=text_rows(8), eval_dataset=text_rows(4, 1),
                tokenizer=tokenizer(), callbacks=[EarlyStoppingCallback()]).train()


# ---- resume

@pytest.mark.parametrize("accum", [1, 2])
def test_resume_is_bit_exact(tmp_path, accum):
    """Dropout on: the model's dropout generator is part of the checkpoint."""
    rows, val = text_rows(18), text_rows(5, 1)
    kw = dict(num_train_epochs=3, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
              gradient_accumulation_steps=accum, per_device_train_batch_size=3, warmup_steps=2, weight_decay=0.01,
              metric_for_best_model="accuracy")
    full = Trainer(tiny(dropout=0.1), args(tmp_path / "full", **kw), train_dataset=rows, eval_dataset=val,
                   tokenizer=tokenizer(), compute_metrics=accuracy)
    full.train()

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny(dropout=0.1), args(part, **kw), train_dataset=rows, eval_dataset=val, tokenizer=tokenizer(),
                compute_metrics=accuracy, callbacks=[Interrupt()]).train()
    assert ckpt.last_checkpoint(part).name == "checkpoint-4"
    resumed = Trainer(tiny(dropout=0.1, seed=9), args(part, **kw), train_dataset=rows, eval_dataset=val,
                      tokenizer=tokenizer(), compute_metrics=accuracy)
    resumed.train(resume_from_checkpoint=True)
    assert losses(resumed) == losses(full)
    assert len(losses(full)) == full.state.max_steps
    drop = ("runtime", "per_second")
    evals = lambda t: [{k: v for k, v in e.items() if not k.endswith(drop)}  # noqa: E731
                       for e in t.state.log_history if "eval_loss" in e]
    assert evals(resumed) == evals(full)
    assert resumed.state.best_model_checkpoint.replace(str(part), "") == \
        full.state.best_model_checkpoint.replace(str(tmp_path / "full"), "")
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(ValueError, match="rows"):
        Trainer(tiny(dropout=0.1), args(part, **kw), train_dataset=rows[:-1], eval_dataset=val,
                tokenizer=tokenizer()).train(resume_from_checkpoint=str(part / "checkpoint-4"))


# ---- datasets

def test_dataset_forms_train_alike(tmp_path):
    rows, val = text_rows(10), text_rows(4, 1)
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    forms = {"list": rows, "dict": cols, "pandas": pd.DataFrame(rows), "datasets": datasets.Dataset.from_list(rows)}
    tok = tokenizer()
    pre = dict(tok([r["text"] for r in rows]))
    pre["labels"] = [r["label"] for r in rows]  # pre-tokenized, transformers' collator name for the label
    forms["pre-tokenized"] = pre
    got = {}
    for name, data in forms.items():
        t = Trainer(tiny(), args(tmp_path / name), train_dataset=data, eval_dataset=val, tokenizer=tok,
                    data_collator=DataCollatorWithPadding(tok) if name == "datasets" else None)
        t.train()
        got[name] = losses(t)
    assert all(v == got["list"] for v in got.values()), got


def test_dynamic_padding_per_batch(tmp_path):
    seen = []
    tok = tokenizer()
    collator = DataCollatorWithPadding(tok)

    def spy(features):
        batch = collator(features)
        seen.append((batch["input_ids"].shape, max(len(f["input_ids"]) for f in features)))
        return batch

    rows = [{"text": " ".join(["good"] * k), "label": k % 2} for k in range(1, 13)]  # 3..14 tokens
    Trainer(tiny(), args(tmp_path, num_train_epochs=1, per_device_train_batch_size=2), train_dataset=rows,
            eval_dataset=text_rows(3, 1), tokenizer=tok, data_collator=spy).train()
    train_batches = seen[:6]
    assert all(shape[1] == longest for shape, longest in seen)
    assert len({shape[1] for shape, _ in train_batches}) == 6  # each batch padded to its own longest row


def test_evaluate_and_predict(tmp_path):
    val = text_rows(9, 1)
    trainer = Trainer(tiny(num_labels=2), args(tmp_path, eval_strategy="no", save_strategy="no"),
                      train_dataset=text_rows(8), tokenizer=tokenizer(), compute_metrics=accuracy)
    m = trainer.evaluate(val)
    assert set(m) >= {"eval_loss", "eval_accuracy", "eval_runtime"}
    out = trainer.predict(val)
    assert out.predictions.shape == (9, 2) and out.label_ids.tolist() == [r["label"] for r in val]
    assert out.metrics["test_loss"] == pytest.approx(m["eval_loss"], rel=1e-12)
    preds, labels, metrics = out
    # the loss is the mean over rows of transformers' cross-entropy on the logits
    z = preds.astype(np.float64) - preds.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert metrics["test_loss"] == pytest.approx(-logp[np.arange(9), labels].mean(), rel=1e-5)
    bare = trainer.predict([{"text": r["text"]} for r in val])  # no labels: logits only
    assert bare.label_ids is None and "test_loss" not in bare.metrics
    np.testing.assert_array_equal(bare.predictions, out.predictions)


def test_label_names_and_regression(tmp_path):
    model = tiny(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    named = [{"text": r["text"], "label": ["negative", "positive"][r["label"]]} for r in text_rows(8)]
    t = Trainer(model, args(tmp_path / "a", eval_strategy="no"), train_dataset=named, tokenizer=tokenizer())
    assert t.train_dataset.labels.tolist() == [r["label"] for r in text_rows(8)]
    reg = [{"text": r["text"], "label": float(r["label"]) * 2.5} for r in text_rows(8)]
    t = Trainer(tiny(num_labels=1), args(tmp_path / "b", eval_strategy="no", num_train_epochs=1),
                train_dataset=reg, tokenizer=tokenizer())
    t.train()
    assert t.model.config.problem_type == "regression"


# ---- bad input

@pytest.mark.parametrize("rows, error, match", [
    ([{"text": "good", "label": 2}], ValueError, r"row 0: label 2 is outside \[0, 2\)"),
    ([{"text": "good", "label": -1}], ValueError, "outside"),
    ([{"text": "good", "label": 0.5}], TypeError, "needs integer class ids"),
    ([{"text": "good", "label": "positive"}], ValueError, "unknown label name 'positive'; the model's labels are "
                                                          "'LABEL_0', 'LABEL_1'"),
    ([{"text": "good", "label": None}], TypeError, "row 0: label is NoneType"),
    ([{"text": "good", "label": 1}, {"text": 7, "label": 0}], TypeError, "row 1: text is int"),
    ([{"text": "good", "label": 1}, {"text": "  ", "label": 0}], ValueError, "row 1: text is empty"),
    ([{"review": "good", "label": 1}], ValueError, "no text column"),
    ([{"text": "good"}], ValueError, "no label column"),
    ([{"text": "good", "label": 1}, {"text": "bad"}], ValueError, "row 1 has columns"),
    ({"text": ["good", "bad"], "label": [1]}, ValueError, "differ in length"),
    ([], ValueError, "empty"),
    ([{"input_ids": [2, 99, 3], "label": 1}], ValueError, "token id 99 is beyond"),
    ([{"input_ids": [2, 5.5, 3], "label": 1}], ValueError, "list of integers"),
    ("good film", TypeError, "str"),
])
def test_bad_rows(tmp_path, rows, error, match):
    with pytest.raises(error, match=match):
        Trainer(tiny(), args(tmp_path, eval_strategy="no"), train_dataset=rows, tokenizer=tokenizer())


def test_unknown_label_name_and_missing_metric(tmp_path):
    model = tiny(id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    with pytest.raises(ValueError, match="unknown label name 'neutral'"):
        Trainer(model, args(tmp_path, eval_strategy="no"), train_dataset=[{"text": "ok", "label": "neutral"}],
                tokenizer=tokenizer())
    with pytest.raises(ValueError, match="pass tokenizer="):
        Trainer(tiny(), args(tmp_path, eval_strategy="no"), train_dataset=text_rows(3))
    t = Trainer(tiny(), args(tmp_path, load_best_model_at_end=True, metric_for_best_model="f1"),
                train_dataset=text_rows(4), eval_dataset=text_rows(2), tokenizer=tokenizer(), compute_metrics=accuracy)
    with pytest.raises(KeyError, match="eval_f1"):
        t.train()


def test_long_text_is_truncated_to_the_tokenizer_limit(tmp_path):
    tok = tokenizer()  # model_max_length 16
    t = Trainer(tiny(), args(tmp_path, eval_strategy="no"), train_dataset=[{"text": "good " * 50, "label": 1}],
                tokenizer=tok)
    assert len(t.train_dataset.features["input_ids"][0]) == 16


# ---- the command line

def test_cli_train_classifier(tmp_path, capsys):
    from pyllm.cli import main

    model_dir = tmp_path / "model"
    tiny(num_labels=2).save_pretrained(model_dir)
    tokenizer().save_pretrained(str(model_dir))
    csv = tmp_path / "data.csv"
    lines = ["sentiment,confidence,text"]
    for r in text_rows(30):
        lines.append(f'{["negative", "positive"][r["label"]]},1,"{r["text"]}"')
    lines.append('neutral,1,"the day"')
    csv.write_bytes(("\r\n".join(lines) + "\r\n").encode() + b'positive,1,"good caf\xe9"\r\n')  # a Latin-1 byte
    out = tmp_path / "out"
    rc = main(["train-classifier", "--data", str(csv), "--text-column", "text", "--label-column", "sentiment",
               "--model", str(model_dir), "--out", str(out), "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
               "--max-length", "12", "--eval-split", "0.2", "--seed", "3", "--labels", "negative,positive",
               "--no-progress"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines[0]["rows"] == 31 and lines[0]["skipped_rows_with_other_labels"] == 1
    assert "eval_accuracy" in lines[-1] and "eval_f1" in lines[-1]
    saved = BertForSequenceClassification.from_pretrained(out)
    assert saved.config.id2label == {0: "negative", 1: "positive"}
    rc = main(["train-classifier", "--data", str(csv), "--text-column", "review", "--label-column", "sentiment",
               "--model", str(model_dir), "--out", str(out)])
    assert rc == 1
    assert "no text column 'review'; its columns are sentiment, confidence, text" in capsys.readouterr().err
    rc = main(["train-classifier", "--data", str(csv), "--label-column", "sentiment", "--model", str(model_dir),
               "--out", str(out), "--labels", "positive,happy"])
    assert rc == 1 and "happy never occur" in capsys.readouterr().err
