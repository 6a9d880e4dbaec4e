"""A run folder (`--out`): who may write into it, and the checkpoints in it.

One run owns a folder at a time: a lock file (an OS lock, released when the process ends
however it ends) makes a second concurrent run refuse, and a folder that already holds a
run is only continued with `--resume` or cleared with `--force`. Checkpoints are written
atomically (graphdsl/runtime/checkpoint.py); `latest.json` is rewritten only after the
files it names are complete, and never names a checkpoint with NaN or infinite weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime import checkpoint as ckpt
from graphdsl.runtime.errors import TrainError, train_error

LOCK_NAME = ".graphdsl.lock"
LATEST = "latest.json"
# What a run writes: --force removes these and nothing else.
RUN_FILES = ("metrics.jsonl", LATEST, "final.safetensors", "final.state.safetensors",
             "vocab.json", "best.json")
RUN_FOLDERS = ("checkpoints", "best", "tensorboard")


def check_folder(out: str, resume: bool, force: bool) -> None:
    """Refuse to write a new run over an old one (before anything is built)."""
    if resume or force or not os.path.isdir(out):
        if os.path.exists(out) and not os.path.isdir(out):
            raise train_error("run-folder", f"--out {out} is a file, not a folder",
                              help="give a folder for the run's files")
        return
    present = sorted(n for n in os.listdir(out) if n != LOCK_NAME)
    if present:
        raise train_error("run-folder", f"--out {out} already holds files "
                          f"({', '.join(present[:5])}{', ...' if len(present) > 5 else ''})",
                          help="continue that run with --resume, start over with --force "
                               "(removes the run's files), or give another --out")


class RunFolder:
    def __init__(self, out: str, model: ModelGraph, program_file: str):
        self.out = out
        self.model = model
        self.program_file = program_file
        self._lock: Any = None

    # -- ownership
    def acquire(self, force: bool) -> None:
        from filelock import FileLock, Timeout

        try:
            os.makedirs(self.out, exist_ok=True)
        except OSError as exc:
            raise train_error("run-folder", f"cannot create --out {self.out}: "
                              f"{exc.strerror or exc}") from None
        lock = FileLock(os.path.join(self.out, LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise train_error("run-folder", f"another run is writing into {self.out}",
                              help="wait for it to finish, or give another --out") from None
        except OSError as exc:
            raise train_error("run-folder", f"cannot lock {self.out}: "
                              f"{exc.strerror or exc}") from None
        self._lock = lock
        if force:
            for name in RUN_FILES:
                path = os.path.join(self.out, name)
                if os.path.isfile(path):
                    os.unlink(path)
            for name in RUN_FOLDERS:
                shutil.rmtree(os.path.join(self.out, name), ignore_errors=True)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- checkpoints
    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def write(self, relative: str, arrays: Mapping[str, np.ndarray],
              state: tuple[dict[str, np.ndarray], dict[str, Any]] | None, step: int,
              epoch: int, point_latest: bool = True, world_size: int = 1) -> str:
        """Weights (and the training state beside them); then, if asked, latest.json.
        ``world_size``: how many processes trained them (resuming with another is fine)."""
        bad = non_finite_tensors(arrays)
        if bad:
            raise train_error("non-finite-gradient", f"the weights became non-finite by step "
                              f"{step} ({', '.join(f'`{n}`' for n in bad[:5])}); they were "
                              "not saved", notes=["the last good checkpoint is kept"],
                              help="lower the learning rate or clip gradients "
                                   "(`clip_norm = 1.0`)")
        path = self.path(relative)
        meta = ckpt.model_metadata(self.model, self.program_file, step=step, epoch=epoch)
        meta["world_size"] = str(world_size)
        ckpt.save_checkpoint(path, arrays, meta)
        pointer: dict[str, Any] = {"weights": relative, "step": step,
                                   "graph_hash": self.model.graph_hash()}
        if state is not None:
            state_relative = relative.replace(".safetensors", ".state.safetensors")
            ckpt.save_state(self.path(state_relative), *state)
            pointer["state"] = state_relative
        if point_latest:
            ckpt.atomic_write_bytes(self.path(LATEST), json.dumps(pointer, indent=2).encode())
        return path

    def read_latest(self, conversions: list[str] | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                               dict[str, Any], str] | None:
        """(weights, state tensors, state, weights file) of the newest checkpoint."""
        pointer_path = self.path(LATEST)
        if not os.path.exists(pointer_path):
            return None
        try:
            pointer = ckpt.read_pointer(pointer_path)
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        weights_name, state_name = pointer["weights"], pointer["state"]
        if pointer.get("graph_hash") != self.model.graph_hash():
            raise train_error("checkpoint-mismatch", f"{pointer_path} was written by a "
                              f"different version of model `{self.model.name}`",
                              help="resume with the program that wrote it, or use a new --out")
        try:
            weights = ckpt.load_checkpoint(self.path(weights_name))
            arrays = ckpt.select(self.model, weights, "*", source="checkpoint",
                                 conversions=conversions)
            tensors, state = ckpt.load_state(self.path(state_name))
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        return arrays, tensors, state, weights_name

    def remove(self, relative: str) -> None:
        for name in (relative, relative.replace(".safetensors", ".state.safetensors")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))


def non_finite_tensors(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return [k for k, v in arrays.items()
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
