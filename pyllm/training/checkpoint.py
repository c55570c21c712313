# Checkpoint directories written atomically (a temporary directory renamed into place), found,
# rotated, and the optimizer state as .npz. Not the training loop and not model file formats.
"""Checkpoints ``output_dir/checkpoint-{step}/``.

A checkpoint is assembled in ``output_dir/.tmp-checkpoint-{step}-{pid}``, every
file flushed to disk, then renamed to its final name in one step, so a crash,
a full disk or an exception while saving leaves either the previous set of
checkpoints or the new one, never a partial checkpoint under a checkpoint
name. Temporary leftovers of a crashed save are removed by the next save.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
PREFIX = "checkpoint"
_CKPT_RE = re.compile(rf"^{PREFIX}-(\d+)$")
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

OPTIMIZER_FILE = "optimizer.npz"
OPTIMIZER_META = "optimizer.json"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINING_ARGS_FILE = "training_args.json"


def list_checkpoints(output_dir: PathLike) -> List[Tuple[int, Path]]:
    """(step, path) of the complete checkpoints in ``output_dir``, by step."""
    d = Path(output_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir() and (p / TRAINER_STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def last_checkpoint(output_dir: PathLike) -> Optional[Path]:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def remove_dir(path: Path) -> None:
    """Delete a directory by first renaming it out of the way, so a crash
    mid-deletion never leaves a half-deleted checkpoint under its name."""
    if not path.exists():
        return
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}"
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(output_dir: PathLike) -> None:
    """Remove temporary and half-deleted directories a crashed run left."""
    d = Path(output_dir)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.is_dir() and (p.name.startswith(TMP_PREFIX + PREFIX) or p.name.startswith(TRASH_PREFIX)):
            shutil.rmtree(p, ignore_errors=True)


def write_checkpoint(output_dir: PathLike, step: int, fill: Callable[[Path], None]) -> Path:
    """Create ``output_dir/checkpoint-{step}`` atomically: ``fill(tmp_dir)``
    writes the files into a temporary directory, which is then synced and
    renamed. On any error the temporary directory is removed and the error
    re-raised; existing checkpoints are untouched (a checkpoint of the same
    step is replaced only after the new one is complete)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)
    final = out / f"{PREFIX}-{step}"
    tmp = out / f"{TMP_PREFIX}{PREFIX}-{step}-{os.getpid()}"
    try:
        tmp.mkdir()
        fill(tmp)
        _fsync_tree(tmp)
        if final.exists():
            old = out / f"{TRASH_PREFIX}{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def rotate_checkpoints(output_dir: PathLike, save_total_limit: Optional[int],
                       protect: Optional[PathLike] = None) -> List[Path]:
    """Delete the oldest checkpoints beyond ``save_total_limit``; returns them. The newest
    checkpoint and ``protect`` (the best model's, when tracked) are never deleted, so with
    both distinct at least two remain, as in transformers."""
    if save_total_limit is None or save_total_limit <= 0:
        return []
    found = [p for _, p in list_checkpoints(output_dir)]
    if len(found) <= save_total_limit:
        return []
    kept = {found[-1]}
    if protect is not None:
        kept.add(Path(protect))
    keep = max(save_total_limit, len(kept & set(found)))
    doomed: List[Path] = []
    remaining = len(found)
    for p in found:
        if remaining <= keep:
            break
        if p not in kept:
            doomed.append(p)
            remaining -= 1
    for p in doomed:
        remove_dir(p)
    return doomed


# ---- optimizer state: nested dicts/lists of arrays and scalars <-> one .npz plus a JSON skeleton

def _flatten(obj: Any, key: str, arrays: Dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name, "key": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise ValueError(f"optimizer state key {k!r} at {key or 'the top'} is not a string")
        return {"__dict__": {k: _flatten(v, f"{key}/{k}", arrays) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.item(), "dtype": obj.dtype.str}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"cannot save optimizer state {key}: {type(obj).__name__} is not an array, number, "
                     "string, list or dict")


def _unflatten(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return np.array(arrays[obj["__array__"]])
        if "__dict__" in obj:
            return {k: _unflatten(v, arrays) for k, v in obj["__dict__"].items()}
        if "__list__" in obj:
            items = [_unflatten(v, arrays) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__scalar__" in obj:
            return np.dtype(obj["dtype"]).type(obj["__scalar__"])
    return obj


def save_optimizer_state(state: Any, directory: Path) -> None:
    """``optimizer.npz`` (the arrays, exactly) and ``optimizer.json`` (the rest)."""
    arrays: Dict[str, np.ndarray] = {}
    skeleton = _flatten(state, "", arrays)
    with open(directory / OPTIMIZER_FILE, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    (directory / OPTIMIZER_META).write_text(json.dumps(skeleton))


def load_optimizer_state(directory: Path) -> Any:
    skeleton = json.loads((directory / OPTIMIZER_META).read_text())
    with np.load(directory / OPTIMIZER_FILE, allow_pickle=False) as arrays:
        return _unflatten(skeleton, arrays)
