"""The engine of `graphdsl train --backend keras` (the driver: graphdsl/runtime/training.py);
optimizers and the step itself are in step.py."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime import training
from graphdsl.runtime.training import NonFiniteLoss, Settings, StepResult, train_error

from .model import build_model
from .step import apply_gradients, compute_gradients, make_groups


class KerasEngine:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings):
        if settings["device"] == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise train_error("train-setting", "--device cuda: no GPU is visible to "
                              "TensorFlow here", help="use --device cpu or auto")
        self.device = "/GPU:0" if settings["device"] in ("auto", "cuda") and \
            tf.config.list_physical_devices("GPU") else "/CPU:0"
        keras.utils.set_random_seed(int(settings["seed"]))
        if settings["precision"] in ("bf16", "fp16"):
            keras.mixed_precision.set_global_policy(
                "mixed_bfloat16" if settings["precision"] == "bf16" else "mixed_float16")
        with tf.device(self.device):
            self.module = build_model(program, model, seed=int(settings["seed"]))
            self.module.groups = make_groups(self.module, specs=settings.optimizers)
            self.module.clip_norm = settings["clip_norm"]
        self.model = model
        jit = bool(settings.compile)
        self._compute = tf.function(self._compute_py, jit_compile=jit, reduce_retracing=True)
        self._apply = tf.function(self._apply_py, reduce_retracing=True)
        self._eval = tf.function(self._eval_py, jit_compile=jit, reduce_retracing=True)

    def _compute_py(self, x: dict[str, Any], y: dict[str, Any]) -> Any:
        return compute_gradients(self.module, x, y)

    def _apply_py(self, grads: list[Any]) -> None:
        apply_gradients(self.module, grads)

    def _eval_py(self, x: dict[str, Any], y: dict[str, Any]) -> Any:
        _, terms, metrics = self.module.compute_losses(x, y, training=False)
        return terms, metrics

    def _split(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({k: tf.convert_to_tensor(batch[k]) for k in self.module.input_names},
                {k: tf.convert_to_tensor(batch[k]) for k in self.module.target_names})

    @staticmethod
    def _result(terms: dict[str, Any], metrics: dict[str, Any]) -> StepResult:
        values = {k: float(v) for k, v in terms.items()}
        return StepResult(sum(values.values()), values,
                          {k: (float(s), float(c)) for k, (s, c) in metrics.items()})

    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        for spec, opt, _ in self.module.groups:
            opt.learning_rate.assign(float(spec["lr"]) * lr_factor)
        x, y = self._split(batch)
        with tf.device(self.device):
            terms, metrics, grads = self._compute(x, y)
            result = self._result(terms, metrics)
            bad = [k for k, v in result.terms.items() if not np.isfinite(v)]
            if bad:
                raise NonFiniteLoss(bad)
            self._apply(grads)
        return result

    def eval_batch(self, batch: Mapping[str, np.ndarray]) -> StepResult:
        x, y = self._split(batch)
        with tf.device(self.device):
            terms, metrics = self._eval(x, y)
        return self._result(terms, metrics)

    def export_arrays(self) -> dict[str, np.ndarray]:
        return self.module.export_arrays()

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.module.load_arrays(arrays)

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors = {}
        for i, (_, opt, _) in enumerate(self.module.groups):
            for j, v in enumerate(opt.variables):
                tensors[f"opt{i}.{j}"] = np.asarray(keras.ops.convert_to_numpy(v))
        return tensors, {"groups": [len(opt.variables) for _, opt, _ in self.module.groups]}

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None:
        for i, (_, opt, names) in enumerate(self.module.groups):
            if not opt.built:
                opt.build([self.module._vars[n] for n in names])
            for j, v in enumerate(opt.variables):
                key = f"opt{i}.{j}"
                if key in tensors:
                    v.assign(np.reshape(tensors[key], v.shape))

    def open_board(self, folder: str) -> Any:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            return None
        try:
            writer = tf.summary.create_file_writer(os.path.join(folder, "tensorboard"))
        except (tf.errors.OpError, ValueError):
            return None
        return _Board(writer)


class _Board:
    """TensorFlow's summary writer behind the add_scalar/close interface the driver uses."""

    def __init__(self, writer: Any):
        self.writer = writer

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        with self.writer.as_default():
            tf.summary.scalar(tag, value, step=step)

    def close(self) -> None:
        self.writer.close()


def train_model(program: Program, model: ModelGraph, overrides: Mapping[str, Any],
                out: str | None = None, resume: bool = False, compile: bool = False,
                quiet: bool = False) -> tuple[Any, training.History, training.Data]:
    return training.train_model(program, model, KerasEngine, overrides, out, resume, compile,
                                quiet)


def run_train(program: Program, args: Any) -> int:
    return training.run_train(program, args, KerasEngine)


def run_eval(program: Program, args: Any) -> int:
    from graphdsl.runtime.evaluate import run_eval as evaluate

    return evaluate(program, args, KerasEngine)
