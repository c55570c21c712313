"""Data-parallel training under mpirun (Open MPI + mpi4py): N ranks with per-rank batch b give the
losses and weights of one process with batch N*b (GPT-2 on token blocks, a BERT classifier on rows);
resume with another N; a rank that dies or stalls ends the job in bounded time; ranks started on
different data refuse to train. Each job runs as child processes with a timeout (tests/mpi_worker.py,
`pyllm train`, `pyllm train-classifier`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"

mpi4py = pytest.importorskip("mpi4py", reason="mpi4py is needed for the data-parallel tests (the test extra)")
MPIRUN = shutil.which("mpirun")
if MPIRUN is None:
    pytest.skip("mpirun (Open MPI) is not installed", allow_module_level=True)


def _env() -> dict:
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": "1",  # one thread per process on both sides: the comparison is about ranks
        "PYLLM_ADAPTIVE_THREADS": "0",
        # containers run tests as root and may forbid the single-copy shared-memory path
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_rmaps_base_oversubscribe": "1",
    })
    return env


def run(cmd, cwd, timeout=240, check=True, env=None):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    p.seconds = time.monotonic() - t0
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def mpirun(n, args, cwd, **kw):
    return run([MPIRUN, "-n", str(n), "--oversubscribe", sys.executable, str(WORKER), *args], cwd, **kw)


def single(args, cwd, **kw):
    return run([sys.executable, str(WORKER), *args], cwd, **kw)


def log(out: Path):
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if "loss" in r]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    return np.array(train), np.array(evals), rows


def weights(out: Path):
    return np.load(out / "weights.npy")


def assert_same_run(a: Path, b: Path):
    la, ea, ra = log(a)
    lb, eb, rb = log(b)
    assert len(la) == len(lb) > 0 and len(ea) == len(eb) > 0
    np.testing.assert_allclose(la, lb, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ea, eb, rtol=1e-6, atol=0)
    assert [r["learning_rate"] for r in ra if "loss" in r] == [r["learning_rate"] for r in rb if "loss" in r]
    wa, wb = weights(a), weights(b)
    assert wa.shape == wb.shape
    # AdamW divides each gradient by its own running size, so reduction-order noise in a tiny gradient moves its
    # weight by a fraction of the learning rate (3e-3): measured up to 3.5e-6, 4e-9 on average
    np.testing.assert_allclose(wa, wb, atol=1e-4, rtol=0)
    assert np.abs(wa - wb).mean() < 1e-7


@pytest.mark.parametrize("ranks,per_rank,accum", [(2, 3, 1), (3, 2, 1), (2, 2, 2)])
def test_ranks_equal_one_process_with_the_global_batch(tmp_path, ranks, per_rank, accum):
    one, many = tmp_path / "one", tmp_path / "many"
    steps = ["--steps", "7", "--accum", str(accum)]
    single([str(one), "--batch", str(ranks * per_rank), *steps], tmp_path)
    mpirun(ranks, [str(many), "--batch", str(per_rank), *steps], tmp_path)
    assert_same_run(one, many)
    assert (many / "comm.txt").read_text().split()[0] == str(ranks)
    # rank 0 alone writes: one log, one model
    assert not list(tmp_path.glob("many/rank*"))


def test_resume_with_another_number_of_ranks(tmp_path):
    """2 ranks x 3 blocks, stopped after the checkpoint at step 4, resumed by 3 ranks x 2 blocks (the same global
    batch of 6): equals one uninterrupted process with batch 6."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    single([str(whole), "--batch", "6", "--steps", "8"], tmp_path)
    p = mpirun(2, [str(split), "--batch", "3", "--steps", "8", "--save-every", "4", "--die-rank", "0",
                   "--die-step", "6"], tmp_path, check=False)
    assert p.returncode != 0 and (split / "checkpoint-4").is_dir() and not (split / "weights.npy").exists()
    mpirun(3, [str(split), "--batch", "2", "--steps", "8", "--resume"], tmp_path)
    assert_same_run(whole, split)


def test_a_rank_that_dies_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    out = tmp_path / "run"
    p = mpirun(2, [str(out), "--batch", "2", "--steps", "10", "--save-every", "3", "--die-rank", "1",
                   "--die-step", "8"], tmp_path, check=False, timeout=120)
    assert p.returncode != 0
    assert p.seconds < 100, p.seconds
    assert "signal 9" in p.stdout + p.stderr or "Killed" in p.stdout + p.stderr, p.stderr[-2000:]
    last = sorted(out.glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))[-1]
    assert last.name == "checkpoint-6"
    mpirun(2, [str(out), "--batch", "2", "--steps", "10", "--resume"], tmp_path)
    whole = tmp_path / "whole"
    single([str(whole), "--batch", "4", "--steps", "10"], tmp_path)
    assert_same_run(whole, out)


def test_a_rank_that_stalls_is_abandoned_after_the_timeout(tmp_path):
    env = _env()
    env["PYLLM_MPI_TIMEOUT"] = "5"
    p = mpirun(2, [str(tmp_path / "run"), "--batch", "2", "--steps", "20", "--hang-rank", "1", "--hang-step", "4"],
               tmp_path, check=False, timeout=120, env=env)
    assert p.returncode != 0
    assert p.seconds < 60, p.seconds
    assert "no answer from the other ranks for 5 s" in p.stderr, p.stderr[-2000:]


def test_ranks_on_different_data_refuse_to_start(tmp_path):
    p = mpirun(2, [str(tmp_path / "run"), "--batch", "2", "--steps", "3", "--data-seed", "-3"], tmp_path,
               check=False, timeout=120)
    assert p.returncode != 0
    assert "the ranks were started with different training jobs" in p.stderr, p.stderr[-2000:]
    assert re.search(r"rank 1 has data\.(train|eval)\.sample_sha256='[0-9a-f]{64}' where rank 0 has '[0-9a-f]{64}'",
                     p.stderr), p.stderr[-2000:]
    assert not (tmp_path / "run" / "weights.npy").exists()


def test_pyllm_train_command_under_mpirun(tmp_path):
    text = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60)
    data = tmp_path / "text.txt"
    data.write_text(text)
    flags = ["--data", str(data), "--max-steps", "6", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
             "--block-size", "16", "--eval-every", "3", "--log-every", "1", "--no-progress"]
    pyllm_cmd = [sys.executable, "-m", "pyllm.cli", "train"]
    run([*pyllm_cmd, "--out", str(tmp_path / "one"), "--batch-size", "4", *flags], tmp_path)
    p = run([MPIRUN, "-n", "2", "--oversubscribe", *pyllm_cmd, "--out", str(tmp_path / "two"), "--batch-size", "2",
             *flags], tmp_path)
    assert "2 ranks, 4 blocks a step" in p.stderr
    la, ea, _ = log(tmp_path / "one")
    lb, eb, _ = log(tmp_path / "two")
    assert len(la) == len(lb) == 6
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    np.testing.assert_allclose(ea, eb, rtol=1e-6)


def classify_run(out: Path):
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    pick = {key: [r[key] for r in rows if key in r] for key in ("loss", "learning_rate", "eval_loss", "eval_accuracy")}
    state = json.loads((sorted(out.glob("checkpoint-*"))[-1] / "trainer_state.json").read_text())
    return pick, state, np.load(out / "weights.npy"), np.load(out / "predictions.npy")


@pytest.mark.parametrize("ranks,per_rank,accum", [(2, 3, 1), (3, 2, 1), (2, 2, 2)])
def test_classifier_ranks_equal_one_process_with_the_global_batch(tmp_path, ranks, per_rank, accum):
    """A BERT classifier fine-tuned by Trainer (epoch evaluation with compute_metrics, best model kept): N ranks x
    b rows equal one process with N*b rows, the short last batch of each epoch (160 rows) included."""
    one, many = tmp_path / "one", tmp_path / "many"
    flags = ["--classify", "--epochs", "4", "--accum", str(accum)]
    single([str(one), "--batch", str(ranks * per_rank), *flags], tmp_path)
    mpirun(ranks, [str(many), "--batch", str(per_rank), *flags], tmp_path)
    a, state_a, wa, pa = classify_run(one)
    b, state_b, wb, pb = classify_run(many)
    assert len(a["loss"]) == len(b["loss"]) == state_a["max_steps"] > 0 and len(a["eval_loss"]) == 4
    assert a["learning_rate"] == b["learning_rate"]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    np.testing.assert_allclose(b["eval_loss"], a["eval_loss"], rtol=1e-5)
    assert b["eval_accuracy"] == a["eval_accuracy"] and max(a["eval_accuracy"]) > 0.5  # it learns
    assert Path(state_b["best_model_checkpoint"]).name == Path(state_a["best_model_checkpoint"]).name
    # Attention key biases have a true gradient of exactly 0 (softmax ignores a score added to every key), so
    # what they get is rounding noise, which AdamW scales up to steps of the learning rate's size: after 108
    # steps of 1e-2 they differ by up to 9e-4 (in torch too). Every other weight: measured up to 6.5e-6.
    noise = np.zeros(wa.size, dtype=bool)
    for name, offset, size in json.loads((one / "layout.json").read_text()):
        noise[offset:offset + size] = name.endswith("attention.self.key.bias")
    assert noise.sum() == 2 * 16
    np.testing.assert_allclose(wb[~noise], wa[~noise], atol=5e-5, rtol=0)
    assert np.abs(wa - wb)[~noise].mean() < 1e-6
    assert np.abs(wa - wb)[noise].max() < 5e-3
    np.testing.assert_allclose(pb, pa, atol=1e-4)
    for r in range(1, ranks):  # every rank ends with rank 0's best weights and all the predictions
        assert np.array_equal(np.load(many / f"rank{r}-weights.npy"), wb)
        assert np.array_equal(np.load(many / f"rank{r}-predictions.npy"), pb)
    assert (many / "comm.txt").read_text().split()[0] == str(ranks)


def test_classifier_resumes_with_another_number_of_ranks(tmp_path):
    """2 ranks x 3 rows, stopped in epoch 2, resumed by 3 ranks x 2 rows from the epoch-1 checkpoint: the run
    of one process with batch 6."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    single([str(whole), "--classify", "--epochs", "2", "--batch", "6"], tmp_path)
    p = mpirun(2, [str(split), "--classify", "--epochs", "2", "--batch", "3", "--die-rank", "0", "--die-step", "40"],
               tmp_path, check=False, timeout=120)
    assert p.returncode != 0 and (split / "checkpoint-27").is_dir() and not (split / "weights.npy").exists()
    mpirun(3, [str(split), "--classify", "--epochs", "2", "--batch", "2", "--resume"], tmp_path)
    a, _, wa, pa = classify_run(whole)
    b, _, wb, pb = classify_run(split)
    assert a["learning_rate"] == b["learning_rate"] and a["eval_accuracy"] == b["eval_accuracy"]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    np.testing.assert_allclose(wb, wa, atol=2e-3, rtol=0)  # the key biases' noise (see above)
    np.testing.assert_allclose(pb, pa, atol=1e-4)


def test_classifier_with_dropout_resumes_each_ranks_masks(tmp_path):
    """With dropout on, each rank draws its own masks and a checkpoint keeps every rank's generator: a job
    whose rank 1 dies in epoch 2 and resumes from the epoch-1 checkpoint ends as the uninterrupted job."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    flags = ["--classify", "--epochs", "3", "--batch", "3", "--dropout", "0.1"]
    mpirun(2, [str(whole), *flags], tmp_path)
    p = mpirun(2, [str(split), *flags, "--die-rank", "1", "--die-step", "40"], tmp_path, check=False, timeout=120)
    # 27 steps an epoch; rank 1's 40th batch (its 29 of epoch 1 include 2 evaluation batches) is in epoch 2
    assert p.returncode != 0 and (split / "checkpoint-27").is_dir() and not (split / "weights.npy").exists()
    assert not (split / "checkpoint-54").exists()
    saved = json.loads((split / "checkpoint-27" / "trainer_state.json").read_text())["model_rng_states"]
    assert len(saved) == 2 and saved[0] != saved[1]
    mpirun(2, [str(split), *flags, "--resume"], tmp_path)
    a, _, wa, pa = classify_run(whole)
    b, _, wb, pb = classify_run(split)
    assert a == b
    assert np.array_equal(wa, wb) and np.array_equal(pa, pb)
    # the masks are the ranks' own: the same job without dropout ends elsewhere
    plain = tmp_path / "plain"
    mpirun(2, [str(plain), "--classify", "--epochs", "3", "--batch", "3"], tmp_path)
    assert not np.allclose(classify_run(plain)[2], wa, atol=1e-4)


def test_pyllm_train_classifier_command_under_mpirun(tmp_path):
    """`mpirun -n 2 pyllm train-classifier` on a CSV equals the one-process command with twice the batch."""
    from pyllm import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["good", "great", "love", "bad", "awful", "hate", "the", "film", "was", "a"]
    model_dir = tmp_path / "model"
    cfg = BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=2)
    BertForSequenceClassification(cfg, seed=0).save_pretrained(model_dir)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    BertTokenizerFast(vocab, model_max_length=16).save_pretrained(str(model_dir))
    rng = np.random.default_rng(0)
    lines = ["sentiment,text"]
    for _ in range(45):
        label = int(rng.integers(0, 2))
        text = [*rng.choice(words[:3] if label else words[3:6], size=2), *rng.choice(words[6:], size=3)]
        rng.shuffle(text)
        lines.append(f"{['negative', 'positive'][label]},{' '.join(text)}")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    flags = ["--data", str(tmp_path / "data.csv"), "--text-column", "text", "--label-column", "sentiment",
             "--model", str(model_dir), "--epochs", "2", "--lr", "1e-2", "--max-length", "12", "--eval-split", "0.2",
             "--seed", "3", "--no-progress"]
    cmd = [sys.executable, "-m", "pyllm.cli", "train-classifier"]
    one = run([*cmd, "--out", str(tmp_path / "one"), "--batch-size", "8", *flags], tmp_path)
    two = run([MPIRUN, "-n", "2", "--oversubscribe", *cmd, "--out", str(tmp_path / "two"), "--batch-size", "4",
               *flags], tmp_path)
    assert "2 ranks, 8 rows a step" in two.stderr
    a, b = (json.loads(p.stdout.splitlines()[-1]) for p in (one, two))
    assert len([x for x in two.stdout.splitlines() if x.startswith("{")]) == 2  # rank 0 alone prints
    assert b["eval_accuracy"] == a["eval_accuracy"]
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-5)
    assert Path(b["best_checkpoint"]).name == Path(a["best_checkpoint"]).name


@pytest.fixture
def two_hosts(tmp_path):
    """Two network namespaces joined by a veth pair, 127.77.0.1 and 127.77.0.2 (loopback-range addresses,
    routed only between the two), and a launch agent that starts Open MPI's daemon for a host inside its
    namespace: two machines as far as MPI can tell (no shared memory, TCP between them)."""
    if shutil.which("ip") is None:
        pytest.fail("the two-host test needs iproute2's ip (apt-get install iproute2)")
    names = [f"pyllm{os.getpid()}{side}" for side in "ab"]
    veth = [f"pv{os.getpid() % 100000}{side}" for side in "ab"]

    def ip(*args):
        p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)}: {p.stderr.strip()} (making network namespaces needs root)")

    try:
        for ns in names:
            ip("netns", "add", ns)
        ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for k, (ns, dev) in enumerate(zip(names, veth)):
            ip("link", "set", dev, "netns", ns)
            for conf in ("all", dev):  # 127.0.0.0/8 is routed off the lo device only when this is set
                ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.route_localnet=1")
            ip("netns", "exec", ns, "ip", "addr", "add", f"127.77.0.{k + 1}/24", "dev", dev)
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            ip("netns", "exec", ns, "ip", "link", "set", dev, "up")
        agent = tmp_path / "netns-agent"
        agent.write_text("#!/bin/sh\nhost=$1; shift\ncase $host in\n" +
                         "".join(f"  127.77.0.{k + 1}) ns={ns};;\n" for k, ns in enumerate(names)) +
                         "  *) echo \"no namespace for host $host\" >&2; exit 1;;\nesac\n"
                         "exec ip netns exec $ns sh -c \"$*\"\n")
        agent.chmod(0o755)
        hosts = tmp_path / "hosts.txt"
        hosts.write_text("127.77.0.1 slots=1\n127.77.0.2 slots=1\n")
        launch = ["ip", "netns", "exec", names[0], MPIRUN, "-n", "2", "--hostfile", str(hosts),
                  "--mca", "plm_rsh_agent", str(agent), "--mca", "btl", "tcp,self",
                  "--mca", "btl_tcp_if_include", "127.77.0.0/24", "--mca", "oob_tcp_if_include", "127.77.0.0/24"]
        yield launch
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)  # takes its veth end along


def test_two_hosts_over_tcp_equal_one_process(tmp_path, two_hosts):
    """Two ranks on two "machines" (network namespaces; the gradient sums cross a veth link over TCP) give the
    run of one process with the global batch, for GPT-2 blocks and the BERT classifier."""
    probe = run([*two_hosts, sys.executable, "-c", "import os; from mpi4py import MPI; "
                 "print(MPI.COMM_WORLD.Get_rank(), os.readlink('/proc/self/ns/net'), "
                 "MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_size())"], tmp_path, timeout=120)
    ranks = sorted(line.split() for line in probe.stdout.splitlines())
    assert [r[0] for r in ranks] == ["0", "1"] and ranks[0][1] != ranks[1][1], probe.stdout
    assert [r[2] for r in ranks] == ["1", "1"]  # each rank alone on its host
    one, two = tmp_path / "one", tmp_path / "two"
    single([str(one), "--batch", "4", "--steps", "7"], tmp_path)
    run([*two_hosts, sys.executable, str(WORKER), str(two), "--batch", "2", "--steps", "7"], tmp_path)
    assert_same_run(one, two)
    one, two = tmp_path / "one-classify", tmp_path / "two-classify"
    single([str(one), "--classify", "--epochs", "2", "--batch", "6"], tmp_path)
    run([*two_hosts, sys.executable, str(WORKER), str(two), "--classify", "--epochs", "2", "--batch", "3"], tmp_path)
    a, _, wa, _ = classify_run(one)
    b, _, wb, _ = classify_run(two)
    assert a["learning_rate"] == b["learning_rate"] and a["eval_accuracy"] == b["eval_accuracy"]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    np.testing.assert_allclose(wb, wa, atol=2e-3, rtol=0)


def test_single_process_does_not_import_mpi(tmp_path):
    code = ("import sys, pyllm.training.distributed as d; w = d.get_world(); "
            "assert (w.size, w.rank, w.distributed) == (1, 0, False); assert 'mpi4py' not in sys.modules")
    env = {k: v for k, v in _env().items() if not k.startswith(("OMPI_COMM_WORLD", "PMI"))}
    run([sys.executable, "-c", code], tmp_path, env=env)
