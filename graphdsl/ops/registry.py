"""The op registry: the single source of truth for every op.

One :class:`OpDef` per op declares its tensor inputs, its arguments (names, kinds,
defaults, allowed values), its parameters (shape, canonical layout, default
initialiser), its shape-and-dtype rule, its mask rule, and the canonical definition
that every backend implements exactly. The checker, the docs' op table and the
backends all read this table; nothing else lists ops.

Op kinds:
- ``layer``: constructed with arguments, then called on tensors; owns parameters.
- ``function``: called directly on tensors and arguments; no parameters.
- ``loss``: a function whose result is a scalar loss term.
- ``metric``: a function whose result is a scalar metric value.

Mask rules (how a padding mask on an input reaches the output):
- ``elementwise``: the output keeps the inputs' mask (merged: masked if any input is).
- ``consume``: the op receives the mask on its ``mask`` input and its output has none.
- ``consume-keep``: the op receives the mask and its output keeps it.
- ``drop``: the op cannot use a mask; a masked input gets a ``mask-ignored`` warning.
- ``none``: the output never has a mask and dropping one is intended (indexing, shapes).
- ``produce``: the op makes a new mask (Embedding with ``mask_zero``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ir.types import Shape, ShapeError, TensorType
from .bounds import Interval


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# Argument kinds the elaborator knows how to check and convert.
ARG_KINDS = (
    "int", "float", "bool", "str", "number", "ints", "int_list", "float_list", "shape",
    "activation", "initializer", "constraint", "regularizer", "any",
)


@dataclass(frozen=True)
class Arg:
    """A non-tensor argument. ``choices`` restricts str arguments."""

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    optional: bool = False  # None is an accepted value
    bounds: Interval | None = None  # the values allowed; default: bounds.BOUNDS by name

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r} for {self.name}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class In:
    """A tensor input. ``dtypes`` is one of: float, int, bool, number, any."""

    name: str
    dtypes: str = "float"
    optional: bool = False
    variadic: bool = False
    doc: str = ""


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a layer owns. ``shape`` gets the checked arguments and the input types."""

    name: str
    shape: Callable[[Mapping[str, Any], Sequence[TensorType]], Shape]
    init: str
    layout: str
    role: str = "weight"  # "weight" (a parameter) or "state" (a buffer such as moving_mean)
    when: Callable[[Mapping[str, Any]], bool] | None = None
    needs_input: bool = True  # False: shape is known from the arguments alone

    def present(self, args: Mapping[str, Any]) -> bool:
        return self.when is None or bool(self.when(args))


@dataclass(frozen=True)
class OpCall:
    """What a shape rule sees: input types by name, checked arguments, parameter types."""

    op: OpDef
    inputs: Mapping[str, Any]  # TensorType, or a list of them for a variadic input
    args: Mapping[str, Any]
    params: Mapping[str, TensorType] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        if name in self.inputs:
            return self.inputs[name]
        return self.args[name]

    def input(self, name: str) -> TensorType:
        value = self.inputs[name]
        assert isinstance(value, TensorType)
        return value

    def has(self, name: str) -> bool:
        return self.inputs.get(name) is not None

    def shape(self, name: str, min_rank: int = 0, exact_rank: int | None = None) -> Shape:
        """The known shape of an input, or ShapeError naming the rule."""
        t = self.input(name)
        if t.shape is None:
            raise _Unknown()
        if exact_rank is not None and len(t.shape) != exact_rank:
            raise ShapeError(
                f"`{self.op.name}` requires `{name}` of rank {exact_rank}, got {t} "
                f"(rank {len(t.shape)})", name)
        if len(t.shape) < min_rank:
            raise ShapeError(
                f"`{self.op.name}` requires `{name}` of rank at least {min_rank}, got {t}", name)
        return t.shape


class _Unknown(Exception):
    """An input's shape is unknown after an earlier error: the result is unknown too."""


InferRule = Callable[[OpCall], "TensorType | tuple[TensorType, ...]"]


@dataclass(frozen=True)
class OpDef:
    name: str
    family: str
    kind: str  # layer | function | loss | metric
    summary: str
    inputs: tuple[In, ...]
    infer: InferRule
    args: tuple[Arg, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    call_args: tuple[Arg, ...] = ()  # layers: non-tensor arguments given at call time
    mask: str = "elementwise"
    random: bool = False  # behaves differently in training and inference
    differentiable: bool = True  # False: no gradient reaches the inputs (stop_gradient)
    canonical: str = ""  # the exact definition the backends implement
    # For masked inputs: does the output keep the mask? (e.g. LSTM only with
    # return_sequences; a reduction only when it keeps the batch and step axes)
    mask_keep: Callable[[OpCall], bool] | None = None

    @property
    def snake_name(self) -> str:
        return snake_case(self.name)

    def arg(self, name: str) -> Arg | None:
        for a in (*self.args, *self.call_args):
            if a.name == name:
                return a
        return None

    def input_named(self, name: str) -> In | None:
        for i in self.inputs:
            if i.name == name:
                return i
        return None

    def param_named(self, name: str, args: Mapping[str, Any] | None = None) -> ParamSpec | None:
        """The spec of parameter ``name``; with ``args``, the one present for them (a name
        can have one spec per case, e.g. Bidirectional's bias per wrapped kind)."""
        named = [p for p in self.params if p.name == name]
        if args is not None:
            named = [p for p in named if p.present(args)] or named
        return named[0] if named else None


def snake_case(name: str) -> str:
    """Keras' automatic layer names: `Conv2D` -> conv2d, `GPT2Block` -> gpt2_block."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            prev, nxt = name[i - 1], name[i + 1] if i + 1 < len(name) else ""
            if prev.islower() or (nxt.islower() and (prev.isupper() or prev.isdigit())):
                out.append("_")
        out.append(ch.lower())
    return "".join(out)


REGISTRY: dict[str, OpDef] = {}

# Arguments every layer accepts, derived from its parameters (Keras names).
LAYER_ARGS = (Arg("trainable", "bool", True, doc="`false` freezes every parameter of the layer"),
              Arg("name", "str", None, optional=True, doc="the layer's name in parameter paths"))


def param_args(spec: ParamSpec) -> tuple[Arg, ...]:
    """The per-parameter arguments: `<p>_initializer`, `<p>_constraint`, `<p>_regularizer`,
    `<p>_mask`. Passing `<p> = <tensor>` instead ties the parameter to an expression."""
    if spec.role != "weight":
        return (Arg(f"{spec.name}_initializer", "initializer", None, optional=True),)
    return (
        Arg(f"{spec.name}_initializer", "initializer", None, optional=True,
            doc=f"initialiser of `{spec.name}` (default {spec.init})"),
        Arg(f"{spec.name}_constraint", "constraint", None, optional=True),
        Arg(f"{spec.name}_regularizer", "regularizer", None, optional=True),
    )


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name} registered twice")
    if op.kind not in ("layer", "function", "loss", "metric"):
        raise ValueError(f"op {op.name}: unknown kind {op.kind}")
    if op.mask not in ("elementwise", "consume", "consume-keep", "drop", "none", "produce"):
        raise ValueError(f"op {op.name}: unknown mask rule {op.mask}")
    if op.mask in ("consume", "consume-keep") and op.input_named("mask") is None:
        raise ValueError(f"op {op.name}: a mask-consuming op needs a `mask` input")
    REGISTRY[op.name] = op
    return op


def unknown() -> type[_Unknown]:
    return _Unknown


def all_ops() -> list[OpDef]:
    from . import load_all

    load_all()
    return sorted(REGISTRY.values(), key=lambda o: (o.family, o.name))


def get(name: str) -> OpDef | None:
    from . import load_all

    load_all()
    return REGISTRY.get(name)
