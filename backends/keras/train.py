"""Training on Keras: optimizer groups, one step, and the engine of `graphdsl train
--backend keras` (the driver: graphdsl/training.py).

The optimizers implement graphdsl's canonical definitions (graphdsl/ops/specs.py):
`adam` and `sgd` add L2 weight decay to the gradient (as PyTorch does; Keras' own
`weight_decay` is decoupled), `adamw` decays decoupled (Keras' AdamW, PyTorch's AdamW).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from graphdsl import training
from graphdsl.compiler import Program
from graphdsl.ir import ModelGraph
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.patterns import matches
from graphdsl.train_config import loss_terms_named
from graphdsl.training import NonFiniteLoss, Settings, StepResult, train_error

from .model import GraphModel, build_model


class _CanonicalAdamStep:
    """Adam's update as graphdsl (and PyTorch) defines it: epsilon is added to the
    bias-corrected sqrt(v). Keras adds it to the uncorrected one, which differs by about
    epsilon / |gradient| in the first steps."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        ops = keras.ops
        opt: Any = self
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(opt.iterations + 1, variable.dtype)
        beta_1_power = ops.power(ops.cast(opt.beta_1, variable.dtype), step)
        beta_2_power = ops.power(ops.cast(opt.beta_2, variable.dtype), step)
        m = opt._momentums[opt._get_variable_index(variable)]
        v = opt._velocities[opt._get_variable_index(variable)]
        opt.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - opt.beta_1))
        opt.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - opt.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - beta_2_power)), opt.epsilon)
        opt.assign_sub(variable, ops.divide(ops.multiply(m, lr / (1 - beta_1_power)),
                                            denominator))


@keras.saving.register_keras_serializable(package="graphdsl")
class CanonicalAdam(_CanonicalAdamStep, keras.optimizers.Adam):
    pass


@keras.saving.register_keras_serializable(package="graphdsl")
class CanonicalAdamW(_CanonicalAdamStep, keras.optimizers.AdamW):
    pass


def make_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    a = dict(spec.args)
    if spec.name == "sgd":
        return keras.optimizers.SGD(learning_rate=a["lr"], momentum=a["momentum"],
                                    nesterov=a["nesterov"])
    if spec.name == "adam":
        return CanonicalAdam(learning_rate=a["lr"], beta_1=a["beta_1"], beta_2=a["beta_2"],
                             epsilon=a["epsilon"])
    return CanonicalAdamW(learning_rate=a["lr"], weight_decay=a["weight_decay"],
                          beta_1=a["beta_1"], beta_2=a["beta_2"], epsilon=a["epsilon"])


def make_groups(model: GraphModel, optimizer: Any = None,
                specs: list[tuple[str, Spec]] | None = None) -> list[tuple[Spec, Any, list[str]]]:
    """(spec, Keras optimizer, parameter names) per group: the first matching pattern wins."""
    ir = model.ir
    trainable = [ir.node(p)["name"] for p in ir.trainable_params()]
    if optimizer is not None:
        spec = default_spec("optimizer", "adam")
        opt = keras.optimizers.get(optimizer)
        return [(spec, opt, trainable)] if trainable else []
    if specs is None:
        specs = [(p, s) for p, s, _ in ir.train.optimizers] if ir.train else []
        if not specs:
            specs = [("*", default_spec("optimizer", "adam"))]
    taken: set[str] = set()
    groups = []
    for pattern, spec in specs:
        names = [n for n in trainable if n not in taken and matches(pattern, n)]
        taken.update(names)
        if names:
            groups.append((spec, make_optimizer(spec), names))
    missing = [n for n in trainable if n not in taken]
    if missing:
        raise train_error("optimizer-coverage", f"{len(missing)} trainable parameters belong "
                          "to no optimizer group", [f"`{n}`" for n in missing[:10]])
    return groups


def _group_loss(model: GraphModel, spec: Spec, terms: dict[str, Any]) -> Any:
    names = spec.get("loss")
    if not names:
        return sum(terms.values())
    wanted = {model.ir.node(n)["name"] for name in names
              for n in loss_terms_named(model.ir, name)}
    return sum(v for k, v in terms.items() if k in wanted)


def compute_gradients(model: GraphModel, x: dict[str, Any],
                      y: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """Loss terms, metrics and each group's gradients (L2 decay included), not applied."""
    with tf.GradientTape(persistent=len(model.groups) > 1) as tape:
        _, terms, metrics = model.compute_losses(x, y, training=True)
        losses = [_group_loss(model, spec, terms) for spec, _, _ in model.groups]
    grads = []
    for (spec, _, names), loss in zip(model.groups, losses, strict=True):
        variables = [model._vars[n] for n in names]
        group = tape.gradient(loss, variables)
        # Dense gradients: Keras' optimizers update sparse (IndexedSlices) gradients of a
        # lookup row by row, so an id seen twice in a batch would get the sum of squares in
        # Adam's second moment instead of the square of the sum. PyTorch's are dense.
        group = [tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v)
                 for g, v in zip(group, variables, strict=True)]
        decay = float(spec.get("weight_decay", 0.0))
        if decay and spec.name in ("adam", "sgd"):
            group = [g + decay * v for g, v in zip(group, variables, strict=True)]
        grads.append(group)
    del tape
    clip = getattr(model, "clip_norm", None)
    if clip:
        flat = [g for group in grads for g in group]
        clipped, _ = tf.clip_by_global_norm(flat, float(clip))
        it = iter(clipped)
        grads = [[next(it) for _ in group] for group in grads]
    return terms, metrics, grads


def apply_gradients(model: GraphModel, grads: list[Any]) -> None:
    for (_, opt, names), group in zip(model.groups, grads, strict=True):
        opt.apply_gradients(zip(group, [model._vars[n] for n in names], strict=True))
    model.project_constraints()


def apply_step(model: GraphModel, x: dict[str, Any], y: dict[str, Any],
               lr_factor: float | None) -> tuple[None, dict[str, Any], dict[str, Any]]:
    """One training step as `fit` runs it."""
    terms, metrics, grads = compute_gradients(model, x, y)
    apply_gradients(model, grads)
    return None, terms, metrics


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
    return training.run_eval(program, args, KerasEngine)
