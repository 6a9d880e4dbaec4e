"""The engine of `graphdsl train --backend keras` (the driver: graphdsl/runtime/training.py);
optimizers and the step itself are in step.py."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime import training
from graphdsl.runtime.engine import StepResult
from graphdsl.runtime.errors import NonFiniteLoss, train_error
from graphdsl.runtime.settings import Settings

from . import distributed as mirrored
from .model import build_model
from .rng import StepRandomness
from .step import (
    apply_gradients,
    compute_gradients,
    finish_gradients,
    make_groups,
    raw_gradients,
)


class KerasEngine:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings):
        if settings["device"] == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise train_error("train-setting", "--device cuda: no GPU is visible to "
                              "TensorFlow here", help="use --device cpu or auto")
        self.device = "/GPU:0" if settings["device"] in ("auto", "cuda") and \
            tf.config.list_physical_devices("GPU") else "/CPU:0"
        # Before anything touches TensorFlow's devices: logical CPUs are declared here.
        self.strategy = mirrored.strategy_for(int(settings["devices"]))
        if self.strategy is not None and int(settings["accumulate"]) > 1:
            raise train_error("train-setting", "`accumulate` is not supported with several "
                              "Keras devices yet", help="use a larger batch instead")
        if "TF_CONFIG" in os.environ:
            self.world = mirrored.worker_world()
        keras.utils.set_random_seed(int(settings["seed"]))
        if settings["precision"] in ("bf16", "fp16"):
            keras.mixed_precision.set_global_policy(
                "mixed_bfloat16" if settings["precision"] == "bf16" else "mixed_float16")
        with self.strategy.scope() if self.strategy else tf.device(self.device):
            self.module = build_model(program, model, seed=int(settings["seed"]))
            self.module.groups = make_groups(self.module, specs=settings.optimizers)
            self.module.clip_norm = settings["clip_norm"]
            if self.strategy is not None:  # optimizer variables mirrored too, made here
                for _, opt, names in self.module.groups:
                    opt.build([self.module._vars[n] for n in names])
        self.accumulate = int(settings["accumulate"])
        self.model = model
        self.randomness = StepRandomness(int(settings["seed"]))
        jit = bool(settings.compile)
        self._compute = tf.function(self._compute_py, jit_compile=jit, reduce_retracing=True)
        self._compute_weighted = tf.function(self._compute_weighted_py, jit_compile=jit,
                                             reduce_retracing=True)
        self._finish = tf.function(self._finish_py, reduce_retracing=True)
        self._apply = tf.function(self._apply_py, reduce_retracing=True)
        self._eval = tf.function(self._eval_py, jit_compile=jit, reduce_retracing=True)
        self._compute_replicas = tf.function(self._compute_replicas_py, reduce_retracing=True)
        self._apply_replicas = tf.function(self._apply_replicas_py, reduce_retracing=True)

    # -- several replicas (MirroredStrategy)
    def _compute_replicas_py(self, rows: Any) -> Any:
        def replica(part: Any) -> Any:
            x, y, weight = part
            ctx = tf.distribute.get_replica_context()
            terms, metrics, grads = raw_gradients(self.module, x, y, weight)
            grads = finish_gradients(self.module, [ctx.all_reduce("SUM", g) for g in grads])
            share = 1.0 / ctx.num_replicas_in_sync  # the optimizer sums the replicas again
            grads = [[g * share for g in group] for group in grads]
            weighted = {k: v * tf.cast(weight, v.dtype) for k, v in terms.items()}
            metrics = {k: (s * tf.cast(weight > 0, s.dtype), c * tf.cast(weight > 0, c.dtype))
                       for k, (s, c) in metrics.items()}
            return weighted, metrics, grads, _not_finite(grads)

        with self.randomness.tracing():
            weighted, metrics, grads, bad = self.strategy.run(replica, args=(rows,))
        total = self.strategy.reduce("SUM", (weighted, metrics, bad), axis=None)
        return total[0], total[1], grads, total[2]

    def _apply_replicas_py(self, grads: Any) -> None:
        self.strategy.run(lambda g: apply_gradients(self.module, g), args=(grads,))

    def _compute_py(self, x: dict[str, Any], y: dict[str, Any]) -> Any:
        with self.randomness.tracing():
            terms, metrics, grads = compute_gradients(self.module, x, y)
        return terms, metrics, grads, _not_finite(grads)

    def _compute_weighted_py(self, x: dict[str, Any], y: dict[str, Any], share: Any,
                             stream: Any) -> Any:
        with self.randomness.tracing(stream):
            return raw_gradients(self.module, x, y, share)

    def _finish_py(self, grads: list[Any]) -> Any:
        """Decay and clipping on the summed gradients, and which of them are not finite."""
        grads = finish_gradients(self.module, grads)
        return grads, _not_finite(grads)

    def _apply_py(self, grads: list[Any]) -> None:
        apply_gradients(self.module, grads)

    def _eval_py(self, x: dict[str, Any], y: dict[str, Any]) -> Any:
        _, terms, metrics = self.module.compute_losses(x, y, training=False)
        return terms, metrics

    def _split(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
        compute = keras.mixed_precision.global_policy().compute_dtype

        def tensor(value: np.ndarray) -> Any:  # float inputs in the compute dtype (bf16)
            t = tf.convert_to_tensor(value)
            return tf.cast(t, compute) if t.dtype == tf.float32 and compute != "float32" else t

        return ({k: tensor(batch[k]) for k in self.module.input_names},
                {k: tf.convert_to_tensor(batch[k]) for k in self.module.target_names})

    @staticmethod
    def _result(terms: dict[str, Any], metrics: dict[str, Any]) -> StepResult:
        values = {k: float(v) for k, v in terms.items()}
        return StepResult(sum(values.values()), values,
                          {k: (float(s), float(c)) for k, (s, c) in metrics.items()})

    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        for spec, opt, _ in self.module.groups:
            opt.learning_rate.assign(float(spec["lr"]) * lr_factor)
        if self.strategy is not None:
            rows = mirrored.per_replica(self.strategy, batch, (self.module.input_names,
                                                               self.module.target_names))
            terms, metrics, grads, not_finite = self._compute_replicas(rows)
            result = self._result(terms, metrics)
            self._check(result, not_finite)
            self._apply_replicas(grads)
        elif self.accumulate > 1:
            result = self._accumulated_step(batch)
        else:
            x, y = self._split(batch)
            with tf.device(self.device):
                terms, metrics, grads, not_finite = self._compute(x, y)
                result = self._result(terms, metrics)
                self._check(result, not_finite)
                self._apply(grads)
        self.randomness.step.assign_add(1)
        return result

    def _check(self, result: StepResult, not_finite: Any = None) -> None:
        """NonFiniteLoss before the update: a loss term, or (``not_finite``: a count per
        variable) a gradient that is not finite."""
        bad = [k for k, v in result.terms.items() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLoss(bad)
        if not_finite is not None and np.asarray(not_finite).any():
            names = [n for _, _, group in self.module.groups for n in group]
            raise NonFiniteLoss([n for n, count in zip(names, np.asarray(not_finite),
                                                       strict=True) if count], what="gradient")

    def _accumulated_step(self, batch: Mapping[str, np.ndarray]) -> StepResult:
        """`accumulate` passes, each weighted by its share of the rows, summed, one step."""
        rows = len(next(iter(batch.values())))
        total: list[Any] | None = None
        results = []
        for i, cut in enumerate(np.array_split(np.arange(rows), self.accumulate)):
            if not len(cut):
                continue
            share = len(cut) / rows
            x, y = self._split({k: v[cut[0]: cut[-1] + 1] for k, v in batch.items()})
            with tf.device(self.device):
                terms, metrics, grads = self._compute_weighted(
                    x, y, tf.constant(share), tf.constant(i, tf.int64))
            result = self._result(terms, metrics)
            self._check(result)
            results.append((share, result))
            total = grads if total is None else [[a + b for a, b in zip(ga, gb, strict=True)]
                                                 for ga, gb in zip(total, grads, strict=True)]
        with tf.device(self.device):
            finished, not_finite = self._finish(total)
            self._check(results[0][1], not_finite)
            self._apply(finished)
        return StepResult(sum(s * r.total for s, r in results),
                          {k: sum(s * r.terms[k] for s, r in results)
                           for k in results[0][1].terms},
                          {k: (sum(r.metrics[k][0] for _, r in results),
                               sum(r.metrics[k][1] for _, r in results))
                           for k in results[0][1].metrics})

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
        tensors = {"rng.step": np.asarray([self.randomness.step.numpy()], np.int64)}
        for i, (_, opt, _) in enumerate(self.module.groups):
            for j, v in enumerate(opt.variables):
                tensors[f"opt{i}.{j}"] = np.asarray(keras.ops.convert_to_numpy(v))
        return tensors, {"groups": [len(opt.variables) for _, opt, _ in self.module.groups]}

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None:
        if "rng.step" in tensors:
            self.randomness.step.assign(int(np.asarray(tensors["rng.step"]).reshape(-1)[0]))
        for i, (_, opt, names) in enumerate(self.module.groups):
            if not opt.built:
                opt.build([self.module._vars[n] for n in names])
            for j, v in enumerate(opt.variables):
                key = f"opt{i}.{j}"
                if key in tensors:
                    v.assign(np.reshape(tensors[key], v.shape))

    def loader(self, batches: Any, workers: int) -> Any:
        """tf.data reads ahead (`workers` batches) while the step runs. The generator runs in
        tf.data's thread: Python sources have no parallel reads in tf.data."""
        source = batches((0, 1))
        first = next(source, None)
        if first is None:
            return iter(())
        signature = {k: tf.TensorSpec((None, *v.shape[1:]), tf.as_dtype(v.dtype))
                     for k, v in first.items()}
        data = tf.data.Dataset.from_generator(lambda: itertools.chain([first], source),
                                              output_signature=signature)
        return data.prefetch(max(workers, 1)).as_numpy_iterator()

    def open_board(self, folder: str) -> Any:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            return None
        try:
            writer = tf.summary.create_file_writer(os.path.join(folder, "tensorboard"))
        except (tf.errors.OpError, ValueError):
            return None
        return _Board(writer)


def _not_finite(grads: list[Any]) -> Any:
    """Per variable, 1 where its gradient has a NaN or an infinity, else 0."""
    flags = [tf.cast(tf.logical_not(tf.reduce_all(tf.math.is_finite(g))), tf.int32)
             for group in grads for g in group]
    return tf.stack(flags) if flags else tf.zeros([0], tf.int32)


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
                quiet: bool = False, force: bool = False, callbacks: list[Any] | None = None
                ) -> tuple[Any, training.History, training.Data]:
    return training.train_model(program, model, KerasEngine, overrides, out, resume, compile,
                                quiet, force, callbacks)


def run_train(program: Program, args: Any) -> int:
    return training.run_train(program, args, KerasEngine)


def run_eval(program: Program, args: Any) -> int:
    from graphdsl.runtime.evaluate import run_eval as evaluate

    return evaluate(program, args, KerasEngine)
