"""Optimizer groups and one training step on Keras, shared by `GraphModel.fit` and the
engine of `graphdsl train --backend keras`.

The optimizers implement graphdsl's canonical definitions (graphdsl/ops/specs.py):
`sgd`, `adam`, `rmsprop` and `adagrad` add L2 weight decay to the gradient (as PyTorch
does; Keras' own `weight_decay` is decoupled), `adamw` decays decoupled (Keras' AdamW,
PyTorch's AdamW).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from graphdsl.elaborate.train_block import loss_terms_named
from graphdsl.ir.patterns import matches
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.runtime.errors import train_error

if TYPE_CHECKING:  # the model calls this module; this module only reads the model
    from .model import GraphModel


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


@keras.saving.register_keras_serializable(package="graphdsl")
class CanonicalRMSprop(keras.optimizers.RMSprop):
    """RMSprop as graphdsl (and PyTorch) defines it: epsilon is added to sqrt(v), not to v
    under the root, and the momentum buffer holds the step before the learning rate."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                      ops.multiply(1 - self.rho, ops.square(gradient))))
        square = velocity
        if self.centered:
            average = self._average_gradients[index]
            self.assign(average, ops.add(ops.multiply(self.rho, average),
                                         ops.multiply(1 - self.rho, gradient)))
            square = ops.subtract(velocity, ops.square(average))
        step = ops.divide(gradient, ops.add(ops.sqrt(square), self.epsilon))
        if self.momentum > 0:
            buffer = self._momentums[index]
            self.assign(buffer, ops.add(ops.multiply(self.momentum, buffer), step))
            step = buffer
        self.assign_sub(variable, ops.multiply(lr, step))


@keras.saving.register_keras_serializable(package="graphdsl")
class CanonicalAdagrad(keras.optimizers.Adagrad):
    """Adagrad as graphdsl (and PyTorch) defines it: epsilon is added to sqrt(s)."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(accumulator), self.epsilon)))


def make_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    a = dict(spec.args)
    if spec.name == "sgd":
        return keras.optimizers.SGD(learning_rate=a["lr"], momentum=a["momentum"],
                                    nesterov=a["nesterov"])
    if spec.name == "adam":
        return CanonicalAdam(learning_rate=a["lr"], beta_1=a["beta_1"], beta_2=a["beta_2"],
                             epsilon=a["epsilon"])
    if spec.name == "rmsprop":
        return CanonicalRMSprop(learning_rate=a["lr"], rho=a["rho"], momentum=a["momentum"],
                                epsilon=a["epsilon"], centered=a["centered"])
    if spec.name == "adagrad":
        return CanonicalAdagrad(learning_rate=a["lr"], epsilon=a["epsilon"],
                                initial_accumulator_value=a["initial_accumulator_value"])
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


def compute_gradients(model: GraphModel, x: dict[str, Any], y: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """Loss terms, metrics and each group's gradients (L2 decay included), not applied."""
    terms, metrics, grads = raw_gradients(model, x, y)
    return terms, metrics, finish_gradients(model, grads)


def raw_gradients(model: GraphModel, x: dict[str, Any], y: dict[str, Any],
                  weight: Any = None) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """Each group's gradient of its losses, times ``weight`` (a pass's share of a larger
    batch: accumulated passes and replicas add these up before finish_gradients)."""
    with tf.GradientTape(persistent=len(model.groups) > 1) as tape:
        _, terms, metrics = model.compute_losses(x, y, training=True)
        losses = [_group_loss(model, spec, terms) for spec, _, _ in model.groups]
        if weight is not None:
            losses = [loss * tf.cast(weight, loss.dtype) for loss in losses]
    grads = []
    for (_, _, names), loss in zip(model.groups, losses, strict=True):
        variables = [model._vars[n] for n in names]
        group = tape.gradient(loss, variables)
        # Dense gradients: Keras' optimizers update sparse (IndexedSlices) gradients of a
        # lookup row by row, so an id seen twice in a batch would get the sum of squares in
        # Adam's second moment instead of the square of the sum. PyTorch's are dense.
        grads.append([tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v)
                      for g, v in zip(group, variables, strict=True)])
    del tape
    return terms, metrics, grads


def finish_gradients(model: GraphModel, grads: list[Any]) -> list[Any]:
    """L2 decay and clipping, on the gradient of the whole batch."""
    finished = []
    for (spec, _, names), group in zip(model.groups, grads, strict=True):
        decay = float(spec.get("weight_decay", 0.0))
        if decay and spec.name != "adamw":  # AdamW decays the weights, not the gradient
            group = [g + decay * model._vars[n] for g, n in zip(group, names, strict=True)]
        finished.append(group)
    clip = getattr(model, "clip_norm", None)
    if clip:
        flat = [g for group in finished for g in group]
        clipped, _ = tf.clip_by_global_norm(flat, float(clip))
        it = iter(clipped)
        finished = [[next(it) for _ in group] for group in finished]
    return finished


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
