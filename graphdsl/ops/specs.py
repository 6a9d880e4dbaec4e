"""Named specifications that are arguments rather than ops: activations, initialisers,
constraints, regularisers, optimizers and learning-rate schedules.

Each table maps a name to its arguments (name -> default, REQUIRED if none) and the
canonical definition that both backends implement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import REQUIRED


@dataclass(frozen=True)
class SpecDef:
    name: str
    args: dict[str, Any]
    canonical: str


def _table(*items: SpecDef) -> dict[str, SpecDef]:
    return {s.name: s for s in items}


ACTIVATIONS = _table(
    SpecDef("linear", {}, "x"),
    SpecDef("relu", {}, "max(x, 0)"),
    SpecDef("gelu", {}, "exact: 0.5 x (1 + erf(x / sqrt(2)))"),
    SpecDef("gelu_tanh", {}, "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"),
    SpecDef("tanh", {}, "tanh(x)"),
    SpecDef("sigmoid", {}, "1 / (1 + exp(-x))"),
    SpecDef("softmax", {}, "softmax over the last axis"),
    SpecDef("silu", {}, "x sigmoid(x)"),
    SpecDef("swish", {}, "x sigmoid(x) (same as silu)"),
    SpecDef("elu", {}, "x if x > 0 else exp(x) - 1"),
    SpecDef("softplus", {}, "log(1 + exp(x))"),
    SpecDef("leaky_relu", {}, "x if x > 0 else 0.2 x (Keras' default slope)"),
    SpecDef("relu6", {}, "min(max(x, 0), 6)"),
    SpecDef("hard_sigmoid", {}, "relu6(x + 3) / 6 (Keras 3's definition, torch's hardsigmoid)"),
    SpecDef("hard_silu", {}, "x hard_sigmoid(x)"),
    SpecDef("hard_swish", {}, "x hard_sigmoid(x) (same as hard_silu)"),
    SpecDef("mish", {}, "x tanh(softplus(x))"),
    SpecDef("selu", {}, "scale (x if x > 0 else alpha (exp(x) - 1)), alpha = "
                        "1.6732632423543772, scale = 1.0507009873554805"),
    SpecDef("softsign", {}, "x / (1 + |x|)"),
)

INITIALIZERS = _table(
    SpecDef("zeros", {}, "0"),
    SpecDef("ones", {}, "1"),
    SpecDef("constant", {"value": REQUIRED}, "value everywhere"),
    SpecDef("normal", {"mean": 0.0, "stddev": 0.05}, "N(mean, stddev^2)"),
    SpecDef("uniform", {"minval": -0.05, "maxval": 0.05}, "U(minval, maxval)"),
    SpecDef("truncated_normal", {"mean": 0.0, "stddev": 0.05},
            "N(mean, stddev^2) redrawn outside two standard deviations"),
    SpecDef("glorot_uniform", {}, "U(-l, l), l = sqrt(6 / (fan_in + fan_out))"),
    SpecDef("glorot_normal", {}, "truncated N(0, 2 / (fan_in + fan_out))"),
    SpecDef("he_normal", {}, "truncated N(0, 2 / fan_in)"),
    SpecDef("he_uniform", {}, "U(-l, l), l = sqrt(6 / fan_in)"),
    SpecDef("lecun_normal", {}, "truncated N(0, 1 / fan_in)"),
    SpecDef("lecun_uniform", {}, "U(-l, l), l = sqrt(3 / fan_in)"),
    SpecDef("variance_scaling", {"scale": 1.0, "mode": "fan_in",
                                 "distribution": "truncated_normal"},
            "Keras' VarianceScaling: v = scale / n, n = fan_in, fan_out or fan_avg (their "
            "mean); truncated_normal: N(0, v) cut at two standard deviations (the standard "
            "deviation corrected for the cut), untruncated_normal: N(0, v), uniform: "
            "U(-sqrt(3 v), sqrt(3 v))"),
    SpecDef("orthogonal", {"gain": 1.0}, "a (semi-)orthogonal matrix times gain"),
    SpecDef("identity", {"gain": 1.0}, "gain times the identity (2-D, square or not)"),
    SpecDef("binary", {"p": 0.5}, "1 with probability p, else 0"),
    SpecDef("sign", {"p": 0.5}, "1 with probability p, else -1"),
    SpecDef("lstm_bias", {}, "zeros, with ones on the forget-gate block [units, 2 units)"),
    SpecDef("from_file", {"path": REQUIRED},
            "values read from a .npy file or a whitespace-separated text file (one row per line);"
            " the path is relative to the program file"),
)
# fan_in and fan_out follow Keras: for a kernel [..., in, out] the receptive field (the
# product of the leading dimensions) multiplies both.

CONSTRAINTS = _table(
    SpecDef("non_neg", {"mode": "project"}, "max(w, 0)"),
    SpecDef("unit_norm", {"axis": 0, "mode": "project"}, "w / ||w|| along axis"),
    SpecDef("max_norm", {"max_value": 2.0, "axis": 0, "mode": "project"},
            "w * min(1, max_value / ||w||) along axis"),
    SpecDef("simplex", {"axis": 0, "mode": "project"},
            "project: Euclidean projection onto the probability simplex along axis; "
            "reparam: softmax of an unconstrained tensor along axis"),
)
# mode = "project": the backend projects after every optimizer step.
# mode = "reparam": the stored tensor is unconstrained and the constraint is applied at use.

REGULARIZERS = _table(
    SpecDef("l1", {"l1": 0.01}, "l1 * sum(|w|)"),
    SpecDef("l2", {"l2": 0.01}, "l2 * sum(w^2)"),
    SpecDef("l1_l2", {"l1": 0.01, "l2": 0.01}, "l1 * sum(|w|) + l2 * sum(w^2)"),
)

# `loss` names the loss terms a group minimises (a name or a list of names; default: the
# total). Two groups with their own losses train a GAN's generator and discriminator.
OPTIMIZERS = _table(
    SpecDef("sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                    "loss": None},
            "w -= lr * (g + weight_decay w), with momentum buffer as in torch.optim.SGD"),
    SpecDef("adam", {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                     "weight_decay": 0.0, "loss": None},
            "Adam as in torch.optim.Adam: epsilon added to the bias-corrected sqrt(v); L2 "
            "weight decay added to the gradient"),
    SpecDef("adamw", {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                      "weight_decay": 0.01, "loss": None}, "AdamW: decoupled weight decay"),
    SpecDef("rmsprop", {"lr": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                        "centered": False, "weight_decay": 0.0, "loss": None},
            "RMSprop as in torch.optim.RMSprop (rho is its alpha): v = rho v + (1 - rho) g^2, "
            "w -= lr g / (sqrt(v) + epsilon), the momentum buffer holding g / (sqrt(v) + "
            "epsilon); Keras' defaults; L2 weight decay added to the gradient"),
    SpecDef("adagrad", {"lr": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7,
                        "weight_decay": 0.0, "loss": None},
            "Adagrad as in torch.optim.Adagrad: s += g^2, w -= lr g / (sqrt(s) + epsilon); "
            "Keras' defaults; L2 weight decay added to the gradient"),
)

SCHEDULES = _table(
    SpecDef("constant", {"warmup": 0}, "lr (after an optional linear warm-up of warmup steps)"),
    SpecDef("step", {"step_size": REQUIRED, "gamma": 0.1, "warmup": 0},
            "lr * gamma ** (step // step_size)"),
    SpecDef("cosine", {"warmup": 0, "min_lr": 0.0},
            "min_lr + (lr - min_lr) (1 + cos(pi t)) / 2 over the training steps"),
    SpecDef("linear", {"warmup": 0, "min_lr": 0.0}, "lr decays linearly to min_lr"),
)

SPEC_TABLES: dict[str, dict[str, SpecDef]] = {
    "activation": ACTIVATIONS,
    "initializer": INITIALIZERS,
    "constraint": CONSTRAINTS,
    "regularizer": REGULARIZERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


@dataclass(frozen=True)
class Spec:
    """A checked use of a spec: `normal(0, 0.1)` -> Spec("initializer", "normal", {...})."""

    kind: str
    name: str
    args: tuple[tuple[str, Any], ...]

    def __getitem__(self, key: str) -> Any:
        return dict(self.args)[key]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.args)}

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args)
        return f"{self.name}({inner})"


def default_spec(kind: str, name: str) -> Spec:
    """A spec with every argument at its default (for defaults the registry names)."""
    table = SPEC_TABLES[kind]
    return Spec(kind, name, tuple(table[name].args.items()))


# Spec arguments that take one of a few strings: (spec, argument) -> the choices.
SPEC_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("variance_scaling", "mode"): ("fan_in", "fan_out", "fan_avg"),
    ("variance_scaling", "distribution"): ("truncated_normal", "untruncated_normal", "uniform"),
}

# Keras' and PyTorch's names of initializers and optimizers -> graphdsl's.
SPEC_ALIASES = {
    "random_normal": "normal", "RandomNormal": "normal", "normal_": "normal",
    "random_uniform": "uniform", "RandomUniform": "uniform", "uniform_": "uniform",
    "TruncatedNormal": "truncated_normal", "trunc_normal_": "truncated_normal",
    "xavier_uniform": "glorot_uniform", "xavier_uniform_": "glorot_uniform",
    "GlorotUniform": "glorot_uniform", "xavier_normal": "glorot_normal",
    "xavier_normal_": "glorot_normal", "GlorotNormal": "glorot_normal",
    "kaiming_normal": "he_normal", "kaiming_normal_": "he_normal", "HeNormal": "he_normal",
    "kaiming_uniform": "he_uniform", "kaiming_uniform_": "he_uniform", "HeUniform": "he_uniform",
    "Zeros": "zeros", "zeros_": "zeros", "Ones": "ones", "ones_": "ones",
    "Constant": "constant", "constant_": "constant", "Orthogonal": "orthogonal",
    "orthogonal_": "orthogonal", "VarianceScaling": "variance_scaling",
    "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal", "Adam": "adam", "AdamW": "adamw", "SGD": "sgd",
    "RMSprop": "rmsprop", "Adagrad": "adagrad", "CosineAnnealingLR": "cosine",
    "CosineDecay": "cosine", "StepLR": "step", "ExponentialDecay": "step",
}


def spec_alias_help(name: str, table: dict[str, SpecDef]) -> str | None:
    if name in ("None", "none", "null"):  # Keras' `activation=None`
        return "graphdsl has no `None`: leave the argument out to get its default" + (
            " (`linear`)" if "linear" in table else "")
    target = SPEC_ALIASES.get(name)
    if target is not None and target in table:
        return f"graphdsl spells it `{target}`"
    return None
