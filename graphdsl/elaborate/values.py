"""Values of elaboration (tensors, constants, layers, blocks, repeats), namespaces and
scopes, and the small helpers the elaboration rooms share."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from graphdsl.diagnostics import (
    Span,
    source_text,
    suggestion_help,
)
from graphdsl.ir.types import (
    Dim,
    Shape,
    Sym,
    TensorType,
)
from graphdsl.ops import REGISTRY
from graphdsl.ops.registry import (
    Arg,
    OpDef,
    ParamSpec,
    snake_case,
)
from graphdsl.ops.specs import Spec
from graphdsl.syntax import tree as ast

# Keras spellings of spec arguments -> graphdsl's.
KERAS_ALIASES = {"learning_rate": "lr", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon",
                 "std": "stddev", "mean_": "mean", "decay": "weight_decay"}

# PyTorch's (and older Keras') keyword names -> graphdsl's, for `unknown-argument` hints.
FRAMEWORK_ARGUMENTS = {
    "dim": "axis", "keepdim": "keepdims", "p": "rate", "out_features": "units",
    "out_channels": "filters", "num_embeddings": "input_dim", "embedding_dim": "output_dim",
    "stride": "strides", "eps": "epsilon", "dilation": "dilation_rate", "hidden_size": "units",
    "num_units": "units", "output_dim": "units", "nb_filter": "filters", "kernel": "kernel_size",
    "bias": "use_bias", "keep_prob": "rate", "drop_prob": "rate", "dropout_rate": "rate",
}
# Arguments a framework needs and graphdsl reads from the input tensor.
INFERRED_ARGUMENTS = frozenset({"in_features", "in_channels", "input_size", "input_shape",
                                "input_dim_", "num_features", "normalized_shape"})


# Keras arguments graphdsl does without, and what to write instead.
ARGUMENTS_WITHOUT = {
    "data_format": "graphdsl is channels last, Keras' default: transpose a channels-first "
                   "tensor once, `transpose(x, [0, 2, 3, 1])`",
    "seed": "random layers draw from the run's seed (`seed` in the train block, or --seed): "
            "leave it out",
    "input_length": "the length comes from the input tensor: leave it out",
}


def argument_alias(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate that a framework's spelling `name` means, if any."""
    target = FRAMEWORK_ARGUMENTS.get(name) or KERAS_ALIASES.get(name)
    return target if target is not None and target in set(candidates) else None


def argument_help(name: str, candidates: Iterable[str]) -> str | None:
    pool = list(candidates)
    alias = argument_alias(name, pool)
    if alias is not None:
        return f"graphdsl calls it `{alias}`"
    if name in INFERRED_ARGUMENTS:
        return "graphdsl reads the input's size from the tensor it is called on: leave it out"
    if name in ARGUMENTS_WITHOUT:
        return ARGUMENTS_WITHOUT[name]
    return suggestion_help(name, pool)


MAX_EXPRESSION_DEPTH = 400
# Activations whose outputs are probabilities, not logits.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
MAX_REPEAT = 10_000


# --- values ------------------------------------------------------------------------------


class Poison:
    """The value of an expression whose error was already reported."""

    def __repr__(self) -> str:
        return "<poison>"


POISON = Poison()


@dataclass
class Tensor:
    node: str
    index: int
    type: TensorType
    span: Span


@dataclass
class Const:
    value: Any
    span: Span


@dataclass
class TupleValue:
    items: list[Any]
    span: Span


@dataclass
class LayerValue:
    """A layer: an op with checked arguments; parameters are made at its first call."""

    op: OpDef
    args: dict[str, Any]
    overrides: dict[str, Tensor]  # parameter name -> tensor (a tie or a structured weight)
    masks: dict[str, Any]  # parameter name -> fixed 0/1 pattern
    specs: dict[str, dict[str, Spec]]  # parameter name -> {initializer|constraint|...: Spec}
    span: Span
    trainable: bool = True
    path: str | None = None
    params: dict[str, Tensor] | None = None
    param_shapes: dict[str, Shape] = field(default_factory=dict)
    calls: int = 0
    arg_spans: dict[str, Span] = field(default_factory=dict)  # argument -> its value's span


@dataclass
class Definition:
    """A block or model definition, callable to make an instance."""

    node: ast.Definition
    namespace: Namespace


@dataclass
class Instance:
    """A block or model used as a layer; its inner layers are made once and reused."""

    definition: Definition
    formals: dict[str, Any]
    span: Span
    path: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # inner path -> LayerValue/Instance
    calls: int = 0


@dataclass
class RepeatValue:
    count: int
    shared: bool
    make: Callable[[int], Any]  # makes copy i: one fresh layer-like value
    span: Span
    path: str | None = None
    members: list[Any] = field(default_factory=list)


@dataclass
class OpFunction:
    op: OpDef


@dataclass
class LayerClass:
    op: OpDef


@dataclass
class ModuleAlias:
    namespace: Namespace


LAYER_LIKE = (LayerValue, Instance, RepeatValue)


# --- namespaces and scopes ---------------------------------------------------------------


@dataclass
class Namespace:
    """The definitions visible in one file: its own and its imports."""

    file: str
    definitions: dict[str, Definition] = field(default_factory=dict)
    aliases: dict[str, Namespace] = field(default_factory=dict)
    failed: bool = False  # an import that could not be read: its names are already reported
    failed_imports: bool = False


class Scope:
    """The environment of one definition body being evaluated."""

    def __init__(self, namespace: Namespace, prefix: str, formals: dict[str, Any],
                 cache: dict[str, Any] | None, model_name: str):
        self.namespace = namespace
        self.prefix = prefix
        self.formals = formals
        self.env: dict[str, Any] = {}
        self.cache = cache  # None at a model's top level: nothing is reused there
        self.counters: dict[str, itertools.count[int]] = {}
        self.taken: dict[str, Span | None] = {}  # layer and parameter names -> where taken
        self.settled: set[str] = set()  # cache keys given a layer by this run of the body
        self.loop_path = ""  # ".2" in the third iteration of a `for` loop, ".2.0" nested
        self.model_name = model_name
        self.symbols: dict[str, Dim] = {}  # size names of the inputs' types -> the sizes
        self.symbol_spans: dict[str, Span] = {}  # where each size name is bound
        self.definition_kind = "model"
        self.definition_name = model_name
        self.caller: Scope | None = None  # the scope of the call that expands this body
        # `layer` names rebound to a tensor (an error): a later call of the name is the same
        # mistake again (`enc = enc(x)` in a loop), not a second one
        self.rebound_layers: set[str] = set()

    def auto_path(self, base: str, span: Span | None = None) -> str:
        counter = self.counters.setdefault(base, itertools.count())
        while True:
            n = next(counter)
            name = base if n == 0 else f"{base}_{n}"
            if name not in self.taken:
                self.taken[name] = span
                return self.prefix + name

    def claim(self, name: str, span: Span | None = None) -> str:
        """The path of something named in the body; in a `for` loop, with the iteration."""
        self.taken.setdefault(self.local(name), span)
        return self.prefix + self.local(name)

    def local(self, name: str) -> str:
        return name + self.loop_path


# --- the elaborator ----------------------------------------------------------------------


# --- shared helpers --------------------------------------------------------------------
# --- helpers -----------------------------------------------------------------------------

_BAD = object()


def convert(kind: str, v: Any) -> Any:
    is_int = isinstance(v, int) and not isinstance(v, bool)
    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "int":
        return v if is_int else _BAD
    if kind == "float":
        return float(v) if is_num else _BAD
    if kind == "number":
        return v if is_num else _BAD
    if kind == "bool":
        return v if isinstance(v, bool) else _BAD
    if kind == "str":
        return v if isinstance(v, str) else _BAD
    if kind == "ints":
        if is_int:
            return v
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                         for x in v)
        return list(v) if ok else _BAD
    if kind in ("int_list", "shape"):
        if is_int:
            return [v]
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                         for x in v)
        return list(v) if ok else _BAD
    if kind == "float_list":
        ok = isinstance(v, list) and all(isinstance(x, (int, float)) and
                                         not isinstance(x, bool) for x in v)
        return [float(x) for x in v] if ok else _BAD
    return v


def kind_words(arg: Arg) -> str:
    return {"int": "an int", "float": "a number", "number": "a number", "bool": "true or false",
            "str": "a string", "ints": "an int or a list of ints", "int_list": "a list of ints",
            "float_list": "a list of numbers", "shape": "a list of ints",
            "any": "a constant"}.get(arg.kind, f"{article(arg.kind)} {arg.kind}")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def within(inner: Span, outer: Span) -> bool:
    return inner.file == outer.file and (outer.line, outer.column) <= \
        (inner.line, inner.column) and (inner.end_line, inner.end_column) <= \
        (outer.end_line, outer.end_column)


def argument_spans(op: OpDef, e: ast.Call) -> dict[str, Span]:
    """Where each input or argument of a call is written: positional arguments by the op's
    inputs in order, keywords by name (the value, as for a positional argument)."""
    spans = {i.name: a.span for i, a in zip(op.inputs, e.args, strict=False)}
    spans.update((k.name, k.value.span) for k in e.keywords)
    return spans


def describe(v: Any) -> str:
    if isinstance(v, Tensor):
        return f"a tensor {v.type}"
    if isinstance(v, Const):
        return source_text(v.value)
    if isinstance(v, LayerValue):
        return f"a `{v.op.name}` layer"
    if isinstance(v, Instance):
        return f"a `{v.definition.node.name.name}` {v.definition.node.kind}"
    if isinstance(v, RepeatValue):
        return "a repeated layer"
    if isinstance(v, Definition):
        return f"the {v.node.kind} `{v.node.name.name}`"
    if isinstance(v, LayerClass):
        return f"the layer type `{v.op.name}`"
    if isinstance(v, OpFunction):
        return f"the function `{v.op.name}`"
    if isinstance(v, TupleValue):
        return f"{len(v.items)} values"
    if isinstance(v, ModuleAlias):
        return "an imported file"
    if isinstance(v, Spec):
        return f"the {v.kind} `{v.name}`"
    return "a value"


def dtype_problem(dtypes: str, t: TensorType) -> tuple[str, str] | None:
    if dtypes == "any":
        return None
    if dtypes == "float" and not t.is_float:
        return ("a float", "float32")
    if dtypes == "int" and not t.is_int:
        return ("an integer", "int32")
    if dtypes == "bool" and not t.is_bool:
        return ("a bool", "bool")
    if dtypes == "number" and t.is_bool:
        return ("a numeric", "float32")
    return None


def fold(op: str, a: Any, b: Any) -> Any:
    if op == "/" and isinstance(a, int) and isinstance(b, int) and b and a % b == 0:
        return a // b  # exact integer division stays an int: sizes like `d / heads`
    table: dict[str, Callable[[Any, Any], Any]] = {
        "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: x / y, "//": lambda x, y: x // y, "%": lambda x, y: x % y,
        "**": lambda x, y: x ** y if abs(y) < 64 else math.pow(x, y),
        "==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
        "and": lambda x, y: x and y, "or": lambda x, y: x or y,
        "@": lambda x, y: _bad_matmul(),
    }
    return table[op](a, b)


def _bad_matmul() -> Any:
    raise TypeError("`@` needs tensors")


def has_error_dim(shape: Shape) -> bool:
    """A dimension made `?` by an error already reported keeps later rules silent."""
    return any(isinstance(d, Sym) and any(name == "?" for name, _ in d.terms) for d in shape)


def layer_base_name(value: Any) -> str:
    if isinstance(value, LayerValue):
        return value.op.snake_name
    if isinstance(value, Instance):
        return snake_case(value.definition.node.name.name)
    return "repeat"


def flatten(v: TupleValue) -> list[Any]:
    out: list[Any] = []
    for item in v.items:
        if isinstance(item, TupleValue):
            out.extend(flatten(item))
        else:
            out.append(item)
    return out


def jsonable_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Spec) else v) for k, v in args.items()}


def _split_param_arg(name: str, params: dict[str, ParamSpec]) -> tuple[str, str, str]:
    for suffix in ("initializer", "constraint", "regularizer", "mask"):
        if name.endswith("_" + suffix) and name[: -len(suffix) - 1] in params:
            return name[: -len(suffix) - 1], "_", suffix
    raise KeyError(name)


def lookup_global(name: str, namespace: Namespace) -> Any:
    if name in namespace.definitions:
        return namespace.definitions[name]
    if name in namespace.aliases:
        return ModuleAlias(namespace.aliases[name])
    op = REGISTRY.get(name)
    if op is not None:
        return LayerClass(op) if op.kind == "layer" else OpFunction(op)
    return None


def defines(node: ast.Definition, name: str) -> Span | None:
    """Where a model body defines a tensor `name`, if it does."""
    for stmt in node.body:
        if isinstance(stmt, (ast.InputStmt, ast.TargetStmt, ast.LayerStmt)) and \
                stmt.name.name == name:
            return stmt.name.span
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if t.name == name:
                    return t.span
        if isinstance(stmt, ast.OutputStmt) and stmt.name and stmt.name.name == name:
            return stmt.name.span
        if isinstance(stmt, ast.ParamStmt):
            for t in stmt.names:
                if t.name == name:
                    return t.span
    return None


def value_nodes(value: Any) -> list[str]:
    """The graph nodes a value stands for: a tensor's producer, a layer's parameters."""
    if isinstance(value, Tensor):
        return [value.node]
    if isinstance(value, TupleValue):
        return [n for item in value.items for n in value_nodes(item)]
    if isinstance(value, LayerValue) and value.params:
        return [t.node for t in value.params.values()]
    if isinstance(value, Instance):  # a block or model used as a layer: all its layers
        return [n for inner in value.cache.values() for n in value_nodes(inner)]
    if isinstance(value, RepeatValue):
        return [n for member in value.members for n in value_nodes(member)]
    return []
