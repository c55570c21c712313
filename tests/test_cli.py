"""The `pyllm` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pyllm
from pyllm import cli


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["isa"] == pyllm.cpu_info()["isa"]


def test_info_text_via_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pyllm.cli", "info"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert f"pyllm {pyllm.__version__}" in out.stdout and "isa:" in out.stdout


def test_unknown_command_fails(capsys):
    try:
        cli.main(["frobnicate"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("an unknown command must exit with status 2")


def test_version(capsys):
    try:
        cli.main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"pyllm {pyllm.__version__}"


# ---- chat: Ctrl-C and end of input

class FakeChatModel:
    """encode_prompt / stream / n_ctx, as chat_repl uses a model; remembers each turn's messages."""

    n_ctx = 1000

    def __init__(self, interrupt_turn=None):
        self.turns = []
        self.interrupt_turn = interrupt_turn
        self.closed = 0

    def encode_prompt(self, messages):
        self.turns.append([dict(m) for m in messages])
        return [1] * len(messages)

    def stream(self, ids, **kwargs):
        turn = len(self.turns)

        def pieces():
            try:
                for i, piece in enumerate(["Hel", "lo", " there"]):
                    if turn == self.interrupt_turn and i == 2:
                        raise KeyboardInterrupt  # Ctrl-C while the reply streams
                    yield piece
            finally:
                self.closed += 1
        return pieces()


def _repl(model, lines, system=None):
    out = []

    def read_line():
        item = lines.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    args = cli.build_parser().parse_args(["chat"] + (["--system", system] if system else []))
    rc = cli.chat_repl(model, {}, args, read_line, out.append, interactive=True)
    return rc, "".join(out)


def test_chat_ctrl_c_during_a_reply_keeps_the_history_and_returns_to_the_prompt():
    model = FakeChatModel(interrupt_turn=1)
    rc, out = _repl(model, ["Hi\n", "Again\n", ""], system="Be brief.")
    assert rc == 0
    assert "Hello [stopped]\n> " in out  # the reply stopped, the prompt came back
    assert model.turns[1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello"},  # the part shown is kept
                              {"role": "user", "content": "Again"}]
    assert out.endswith("Hello there\n> \n")  # end of input at the prompt: a clean exit
    assert model.closed == 2  # the interrupted stream was closed (the model's lock released)


def test_chat_ctrl_c_at_the_prompt_quits():
    model = FakeChatModel()
    rc, out = _repl(model, ["Hi\n", KeyboardInterrupt()])
    assert rc == 0 and out == "> Hello there\n> \n"
    rc, _ = _repl(FakeChatModel(), ["/exit\n", "never read\n"])
    assert rc == 0


def _read_until(stream, marker, limit=10**6):
    """Read a pipe until ``marker`` appears (or it closes); returns what was read."""
    import os

    seen = b""
    while marker.encode() not in seen and len(seen) < limit:
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    return seen.decode("utf-8", "replace")


def test_chat_sigint_in_a_real_process(smollm_path, tmp_path):
    import signal

    cmd = [sys.executable, "-m", "pyllm.cli", "chat", "-m", str(smollm_path), "-n", "200", "-v", "--n-ctx", "512"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert "pyllm chat:" in _read_until(proc.stderr, "pyllm chat:")
        proc.stdin.write(b"Tell me a long story about a dragon.\n")
        proc.stdin.flush()
        assert _read_until(proc.stdout, " ")  # the reply has started
        proc.send_signal(signal.SIGINT)  # stops the reply
        assert "[stopped]" in _read_until(proc.stdout, "[stopped]")
        out, err = proc.communicate(b"", timeout=300)  # end of input at the prompt
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    # Ctrl-C at the prompt exits 0 too
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert "pyllm chat:" in _read_until(proc.stderr, "pyllm chat:")  # the loop has started
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()


# ---- flags and files that are wrong say so

def test_sampling_flags_are_checked(smollm_path, capsys):
    assert cli.main(["generate", "Hi", "-m", str(smollm_path), "--temperature", "0", "--do-sample"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyllm: error: temperature") and "do_sample=False" in err
    assert cli.main(["chat", "-m", str(smollm_path), "--temperature", "0", "--do-sample"]) == 1
    assert capsys.readouterr().err.startswith("pyllm: error: temperature")
    # greedy at temperature 0 is fine (the temperature is unused), as in transformers
    assert cli.main(["generate", "Hi", "-m", str(smollm_path), "--temperature", "0", "-n", "2", "-q"]) == 0


def test_too_many_threads_warns(smollm_path, capsys):
    import os

    before = pyllm.get_num_threads()
    try:
        n = (os.cpu_count() or 1) + 3
        assert cli.main(["generate", "Hi", "-m", str(smollm_path), "-n", "2", "-q", "--threads", str(n)]) == 0
    finally:
        pyllm.set_num_threads(before)
    assert f"pyllm: warning: --threads {n} is more than the" in capsys.readouterr().err


def _corrupt_files(tmp_path, smollm_path):
    (tmp_path / "tiny.gguf").write_bytes(b"garbage")
    (tmp_path / "cut.gguf").write_bytes(smollm_path.read_bytes()[:100_000])
    (tmp_path / "zeros.gguf").write_bytes(bytes(4096))
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    no_weights = tmp_path / "noweights"
    no_weights.mkdir()
    small = '{"model_type": "gpt2", "n_positions": 64, "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 10}'
    (no_weights / "config.json").write_text(small)
    bad_weights = tmp_path / "badweights"
    bad_weights.mkdir()
    (bad_weights / "config.json").write_text(small)
    (bad_weights / "model.safetensors").write_bytes(b"\x08" + bytes(20))
    return [tmp_path / "tiny.gguf", tmp_path / "cut.gguf", tmp_path / "zeros.gguf", bad_json, no_weights,
            bad_weights, tmp_path / "missing.gguf", tmp_path]


def test_malformed_model_files_are_errors_not_tracebacks(smollm_path, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be. " * 10)
    for path in _corrupt_files(tmp_path, smollm_path):
        for command in (["generate", "Hi", "-m", str(path)], ["perplexity", str(text), "-m", str(path)],
                        ["info", str(path)], ["generate", "Hi", "-m", str(path), "--n-ctx", "64"]):
            assert cli.main(command) == 1, command  # an exception escaping main would be a traceback
            err = capsys.readouterr().err
            assert err.startswith("pyllm: error: ") and len(err.splitlines()) == 1, (command, err)
