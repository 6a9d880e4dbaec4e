"""Expressions: one rule per syntax-node kind in a dispatch table (names, literals,
operators, attributes, subscripts); calls and repeats are the calls room's rules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
    did_you_mean,
    source_text,
    suggestion_help,
)
from graphdsl.elaborate.stateless_layers import MERGE_LAYERS, ONE_TENSOR_LAYERS
from graphdsl.elaborate.values import (
    LAYER_LIKE,
    MAX_EXPRESSION_DEPTH,
    POISON,
    Const,
    Instance,
    LayerValue,
    ModuleAlias,
    Poison,
    RepeatValue,
    Scope,
    Tensor,
    TupleValue,
    defines,
    describe,
    fold,
    lookup_global,
    value_nodes,
)
from graphdsl.ir.types import (
    DTYPES,
)
from graphdsl.ops import REGISTRY
from graphdsl.ops.elementwise import OPERATORS
from graphdsl.ops.specs import SPEC_ALIASES, SPEC_TABLES
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


class ExpressionRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el
        # syntax-node kind -> its rule; other rooms register the kinds they own
        self.rules: dict[type, Callable[[Any, Scope], Any]] = {
            ast.Number: self.eval_Number, ast.String: self.eval_String, ast.Bool: self.eval_Bool,
            ast.Name: self.eval_Name, ast.ListExpr: self.eval_ListExpr,
            ast.BinOp: self.eval_BinOp, ast.UnaryOp: self.eval_UnaryOp,
            ast.Attribute: self.eval_Attribute, ast.Subscript: self.eval_Subscript,
        }

    def register(self, kind: type, rule: Callable[[Any, Scope], Any]) -> None:
        self.rules[kind] = rule

    def try_const(self, e: ast.Expr, scope: Scope) -> Any:
        """A constant's value without evaluating anything that would add nodes."""
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.Name) and e.id in scope.formals and e.id not in scope.env:
            return scope.formals[e.id]
        if isinstance(e, ast.UnaryOp) and e.op == "-":
            v = self.try_const(e.operand, scope)
            return -v if isinstance(v, (int, float)) else None
        if isinstance(e, ast.BinOp) and e.op in ("*", "/", "+", "-"):
            a, b = self.try_const(e.left, scope), self.try_const(e.right, scope)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                try:
                    return fold(e.op, a, b)
                except (ZeroDivisionError, OverflowError):
                    return None
        return None

    def eval(self, e: ast.Expr, scope: Scope) -> Any:
        self.el.depth += 1
        try:
            if self.el.depth > MAX_EXPRESSION_DEPTH:
                if self.el.depth == MAX_EXPRESSION_DEPTH + 1:
                    self.el.sink.error("syntax", f"expression nested more than "
                                    f"{MAX_EXPRESSION_DEPTH} levels deep", e.span,
                                    help="split it into named intermediate tensors")
                return POISON
            value = self.rules[type(e)](e, scope)
            if isinstance(value, Poison):
                self.el.poisoned += 1
            return value
        finally:
            self.el.depth -= 1

    def eval_Number(self, e: ast.Number, scope: Scope) -> Any:
        if isinstance(e.value, float) and math.isinf(e.value):  # `1e400`
            self.el.sink.error("argument-value", "this number is too large for a float "
                               "(the largest is about 1.8e308)", e.span)
            return POISON
        return Const(e.value, e.span)

    def eval_String(self, e: ast.String, scope: Scope) -> Const:
        return Const(e.value, e.span)

    def eval_Bool(self, e: ast.Bool, scope: Scope) -> Const:
        return Const(e.value, e.span)

    def eval_Name(self, e: ast.Name, scope: Scope) -> Any:
        if e.id in scope.env:
            return scope.env[e.id]
        if e.id in scope.formals:
            v = scope.formals[e.id]
            return v if isinstance(v, Poison) else Const(v, e.span)
        if e.id in scope.symbols:
            return self.size(e, scope)
        found = lookup_global(e.id, scope.namespace)
        if found is not None:
            return found
        if e.id in DTYPES:
            return Const(e.id, e.span)
        self.unknown_name(e.id, e.span, scope)
        return POISON

    def size(self, e: ast.Name, scope: Scope) -> Any:
        """A size named in an input's type, read as a number: `input x : float32[B, C]`
        then `Dense(C / 2)`. It is the caller's size, known only when it is a number."""
        size = scope.symbols[e.id]
        if isinstance(size, int):
            return Const(size, e.span)
        where = scope.symbol_spans.get(e.id)
        self.el.sink.error(
            "unknown-dimension", f"`{e.id}` is a symbolic size"
            + ("" if str(size) == e.id else f" (here {size})")
            + ", not a number known at compile time", e.span,
            notes=[Note(f"`{e.id}` takes its size from this input", where)] if where else [],
            help=f"give the input a known size for `{e.id}`, or pass the number as a "
                 f"parameter of the {scope.definition_kind}")
        return POISON

    def unknown_name(self, name: str, span: Span, scope: Scope) -> None:
        if scope.namespace.failed_imports:
            return  # the name may come from a file that could not be read: already reported
        for model_name, node in self.el.all_models.items():
            if model_name == scope.model_name:
                continue
            where = defines(node, name)
            if where is not None:
                self.el.sink.error(
                    "disconnected",
                    f"`{name}` is not an input of model `{scope.model_name}`", span,
                    notes=[Note(f"`{name}` is defined in model `{model_name}`", where)],
                    help=f"declare `input {name} : ...` in `{scope.model_name}`, and connect "
                         "the two models in a combined model")
                return
        caller = scope.caller
        while caller is not None:
            outer = caller.env.get(name)
            if isinstance(outer, Tensor):
                self.el.g.excused.update(value_nodes(outer))  # meant to be used: no echo
                kind = scope.definition_kind
                self.el.sink.error(
                    "unknown-name", f"`{name}` is not defined in {kind} "
                    f"`{scope.definition_name}`: a {kind} sees only its own inputs, "
                    f"parameters and layers", span,
                    notes=[Note(f"`{name}` is a tensor of {caller.definition_kind} "
                                f"`{caller.definition_name}`, made here", outer.span)],
                    help=f"declare `input {name} : {outer.type}` in `{scope.definition_name}` "
                         "and pass the tensor in the call")
                return
            caller = caller.caller
        # What the user meant is used, as far as the checks are concerned: the typo is the
        # one mistake, not also "unused" warnings about the tensor it should have named.
        for meant in did_you_mean(name, scope.env):
            self.el.g.excused.update(value_nodes(scope.env.get(meant)))
        hint = habit_help(name)
        if hint is None:
            # Suggest names of the same kind: a layer for a layer (capitalised, as Keras
            # spells layers), a tensor or function otherwise.
            layer_like = name[:1].isupper()
            ops = [o for o, d in REGISTRY.items() if (d.kind == "layer") == layer_like]
            values = [] if layer_like else [*scope.env, *scope.formals]
            hint = suggestion_help(name, [*values, *scope.namespace.definitions,
                                          *scope.namespace.aliases, *ops])
        for kind, table in SPEC_TABLES.items():
            if name in table:
                hint = f"`{name}` is an {kind} name: pass it as an argument, e.g. " \
                    + {"initializer": "`kernel_initializer = ...`",
                       "activation": "`activation = ...`",
                       "constraint": "`kernel_constraint = ...`",
                       "regularizer": "`kernel_regularizer = ...`",
                       "optimizer": "in a train block: `optimizer * = ...`",
                       "schedule": "in a train block: `schedule = ...`"}[kind]
                if name in REGISTRY:
                    hint = None
                break
        self.el.sink.error("unknown-name", f"`{name}` is not defined", span, help=hint)

    def eval_ListExpr(self, e: ast.ListExpr, scope: Scope) -> Any:
        items = [self.eval(i, scope) for i in e.items]
        if any(isinstance(i, Poison) for i in items):
            return POISON
        if all(isinstance(i, Const) for i in items):
            return Const([i.value for i in items], e.span)
        if all(isinstance(i, (Const, Tensor)) for i in items):
            dtype = next(i.type.dtype for i in items if isinstance(i, Tensor))
            tensors = [i if isinstance(i, Tensor) else self.el.opcalls.constant(i, dtype) for i in items]
            if any(isinstance(t, Poison) for t in tensors):
                return POISON
            return self.el.opcalls.make_op(REGISTRY["stack"], {"xs": tensors}, {"axis": 0}, e.span)
        self.el.sink.error("argument-type", "a list holds numbers or tensors", e.span)
        return POISON

    def eval_BinOp(self, e: ast.BinOp, scope: Scope) -> Any:
        left = self.eval(e.left, scope)
        right = self.eval(e.right, scope)
        if isinstance(left, Poison) or isinstance(right, Poison):
            return POISON
        if isinstance(left, Const) and isinstance(right, Const):
            try:
                result = fold(e.op, left.value, right.value)
                if isinstance(result, float) and not math.isfinite(result):
                    # 1e300 * 1e300 is inf in floats: a number no layer can take
                    raise OverflowError if not math.isnan(result) else ValueError
                return Const(result, e.span)
            except (TypeError, ZeroDivisionError, OverflowError, ValueError) as exc:
                self.el.sink.error("argument-value", f"cannot compute `{e.op}` of "
                                   f"{source_text(left.value)} and {source_text(right.value)}: "
                                   f"{arithmetic_reason(exc)}", e.span)
                return POISON
        if not isinstance(left, (Tensor, Const)) or not isinstance(right, (Tensor, Const)):
            bad = left if not isinstance(left, (Tensor, Const)) else right
            self.el.sink.error("argument-type", f"`{e.op}` needs tensors or numbers, got "
                            f"{describe(bad)}", e.span,
                            help="call a layer on a tensor first" if isinstance(bad, LAYER_LIKE)
                            else None)
            return POISON
        op = REGISTRY[OPERATORS[e.op]]
        dtype = left.type.dtype if isinstance(left, Tensor) else right.type.dtype  # type: ignore[union-attr]
        a = left if isinstance(left, Tensor) else self.el.opcalls.constant(left, dtype)
        b = right if isinstance(right, Tensor) else self.el.opcalls.constant(right, dtype)
        if isinstance(a, Poison) or isinstance(b, Poison):
            return POISON
        return self.el.opcalls.make_op(op, {"x": a, "y": b}, {}, e.span,
                            arg_spans={"x": e.left.span, "y": e.right.span})

    def eval_UnaryOp(self, e: ast.UnaryOp, scope: Scope) -> Any:
        v = self.eval(e.operand, scope)
        if isinstance(v, Poison):
            return POISON
        if isinstance(v, Const):
            try:
                return Const({"-": lambda x: -x, "+": lambda x: +x,
                              "not": lambda x: not x}[e.op](v.value), e.span)
            except TypeError:
                self.el.sink.error("argument-value",
                                f"cannot apply `{e.op}` to {source_text(v.value)}",
                                e.span)
                return POISON
        if not isinstance(v, Tensor):
            self.el.sink.error("argument-type", f"`{e.op}` needs a tensor or a number, got "
                            f"{describe(v)}", e.span)
            return POISON
        if e.op == "+":
            return v
        op = REGISTRY["negative" if e.op == "-" else "logical_not"]
        return self.el.opcalls.make_op(op, {"x": v}, {}, e.span)

    def eval_Attribute(self, e: ast.Attribute, scope: Scope) -> Any:
        if isinstance(e.value, ast.Name) and e.value.id not in scope.env and \
                e.value.id in self.el.all_models and e.value.id != scope.model_name and \
                lookup_global(e.value.id, scope.namespace) is not None:
            where = defines(self.el.all_models[e.value.id], e.attr)
            if where is not None:
                self.el.sink.error(
                    "disconnected",
                    f"`{e.value.id}.{e.attr}` is a tensor inside model `{e.value.id}`, not an "
                    f"input of model `{scope.model_name}`", e.span,
                    notes=[Note(f"`{e.attr}` is defined in model `{e.value.id}`", where)],
                    help=f"declare `input {e.attr} : ...` in `{scope.model_name}` and pass the "
                         f"tensor in, or use `{e.value.id}` as a layer")
                return POISON
        framework = framework_path(e)
        if framework is not None and framework[0] not in scope.env and \
                lookup_global(framework[0], scope.namespace) is None:
            dotted = ".".join(framework)
            self.el.sink.error("unknown-name", f"`{dotted}` is not defined: graphdsl has no "
                               f"module `{framework[0]}`", e.span,
                               help=framework_help(framework[-1]))
            return POISON
        base = self.eval(e.value, scope)
        if isinstance(base, Poison):
            return POISON
        if isinstance(base, ModuleAlias):
            if base.namespace.failed:
                return POISON
            found = lookup_global(e.attr, base.namespace)
            if found is None:
                self.el.sink.error("unknown-name", f"`{e.attr}` is not defined in the imported "
                                "file", e.attr_span,
                                help=suggestion_help(e.attr, base.namespace.definitions))
                return POISON
            return found
        if isinstance(base, Tensor):
            if e.attr == "T":
                return self.el.opcalls.make_op(REGISTRY["transpose"], {"x": base}, {"perm": None}, e.span)
            method = OTHER_SPELLINGS.get(e.attr, e.attr)
            self.el.sink.error("unknown-name", f"a tensor has no attribute `{e.attr}`",
                               e.attr_span,
                               help=f"ops are functions, not methods: `{method}(x, ...)`"
                               if method in REGISTRY else "`.T` transposes the last two axes")
            return POISON
        if isinstance(base, LayerValue):
            return self.layer_attribute(base, e)
        if isinstance(base, Instance):
            inner = base.cache.get(e.attr)
            if inner is None:
                known_names = sorted(base.cache)
                self.el.sink.error("unknown-name", f"`{e.attr}` is not a layer or parameter of "
                                f"`{base.path or base.definition.node.name.name}`"
                                + ("" if known_names else " (call it first: its layers are made "
                                   "at its first call)"), e.attr_span,
                                help=suggestion_help(e.attr, known_names))
                return POISON
            return inner
        if isinstance(base, RepeatValue) and (e.attr.isdigit() or True):
            self.el.sink.error("unknown-name", f"a repeated layer has no attribute `{e.attr}`",
                            e.attr_span, help="index its members like `stack[0]`")
            return POISON
        self.el.sink.error("unknown-name", f"{describe(base)} has no attribute `{e.attr}`",
                        e.attr_span)
        return POISON

    def layer_attribute(self, layer: LayerValue, e: ast.Attribute) -> Any:
        spec = layer.op.param_named(e.attr)
        names = [p.name for p in layer.op.params if p.present(layer.args)]
        if spec is None or not spec.present(layer.args):
            self.el.sink.error("unknown-name", f"`{layer.op.name}` layer has no parameter "
                            f"`{e.attr}`", e.attr_span,
                            help=suggestion_help(e.attr, names) or
                            (f"its parameters: {', '.join(names)}" if names else
                             "it has no parameters"))
            return POISON
        if layer.params is None:
            if any(p.needs_input for p in layer.op.params if p.present(layer.args)):
                self.el.sink.error("invalid-statement", f"`{layer.path}.{e.attr}` does not exist "
                                "yet: its shape depends on the layer's input", e.span,
                                help=f"call `{layer.path}` before using its parameters")
                return POISON
            self.el.layers.build_params(layer, [], e.span)
        assert layer.params is not None
        return layer.params.get(e.attr, POISON)

    def eval_Subscript(self, e: ast.Subscript, scope: Scope) -> Any:
        base = self.eval(e.value, scope)
        if isinstance(base, Poison):
            return POISON
        if isinstance(base, (TupleValue, RepeatValue)) or (isinstance(base, Const) and
                                                           isinstance(base.value, list)):
            if len(e.items) != 1 or isinstance(e.items[0], (ast.Slice, ast.EllipsisExpr)):
                self.el.sink.error("argument-type", "index a list with one integer", e.span)
                return POISON
            i = self.eval(e.items[0], scope)
            seq = base.items if isinstance(base, TupleValue) else \
                base.members if isinstance(base, RepeatValue) else base.value
            if not isinstance(i, Const) or not isinstance(i.value, int) or \
                    not -len(seq) <= i.value < len(seq):
                self.el.sink.error("argument-value", f"index must be an integer in "
                                f"[{-len(seq)}, {len(seq)})", e.items[0].span)
                return POISON
            item = seq[i.value]
            return Const(item, e.span) if isinstance(base, Const) else item
        if not isinstance(base, Tensor):
            self.el.sink.error("argument-type", f"cannot index {describe(base)}", e.span)
            return POISON
        items: list[tuple[Any, ...]] = []
        for item in e.items:
            if isinstance(item, ast.EllipsisExpr):
                if ("ellipsis",) in items:
                    self.el.sink.error("argument-value", "only one `...` per index", item.span)
                    return POISON
                items.append(("ellipsis",))
            elif isinstance(item, ast.Slice):
                parts: list[int | None] = []
                for part in (item.start, item.stop, item.step):
                    if part is None:
                        parts.append(None)
                        continue
                    v = self.eval(part, scope)
                    if not isinstance(v, Const) or not isinstance(v.value, int):
                        self.el.sink.error("argument-type", "slice bounds must be integers",
                                        part.span)
                        return POISON
                    parts.append(v.value)
                if parts[2] == 0:
                    self.el.sink.error("argument-value", "a slice step cannot be 0",
                                       item.step.span if item.step else item.span)
                    return POISON
                items.append(("slice", *parts))
            else:
                v = self.eval(item, scope)
                if isinstance(v, Poison):
                    return POISON
                if not isinstance(v, Const) or not isinstance(v.value, int) or \
                        isinstance(v.value, bool):
                    self.el.sink.error("argument-type", f"an index must be an integer, got "
                                    f"{describe(v)}", item.span,
                                    help="select with where(...) or a mask instead")
                    return POISON
                items.append(("index", v.value))
        return self.el.opcalls.make_op(REGISTRY["getitem"], {"x": base}, {"items": items}, e.span)


# Spellings from Python, PyTorch and Keras habits -> what graphdsl writes.
HABITS = {
    "True": "graphdsl writes booleans in lower case: `true`",
    "False": "graphdsl writes booleans in lower case: `false`",
    "None": "graphdsl has no `None`: leave an argument out to get its default; in a tensor "
            "type, name the dimension instead (e.g. `B`)",
    "self": "there is no `self`: a layer's parameters are `layer.kernel`, `layer.bias`, ...",
    "Input": "an input is declared, with its type: `input x : float32[B, 8]`",
    "print": "graphdsl has no `print`: `graphdsl compile` shows every layer's shape",
}
FRAMEWORK_NAMES = {
    "Linear": "Dense", "LazyLinear": "Dense", "Conv1d": "Conv1D", "Conv2d": "Conv2D",
    "Conv3d": "Conv3D", "ConvTranspose1d": "Conv1DTranspose",
    "ConvTranspose2d": "Conv2DTranspose", "ConvTranspose3d": "Conv3DTranspose",
    "BatchNorm1d": "BatchNormalization", "BatchNorm2d": "BatchNormalization",
    "BatchNorm3d": "BatchNormalization", "LayerNorm": "LayerNormalization",
    "GroupNorm": "GroupNormalization", "MultiheadAttention": "MultiHeadAttention",
    "MaxPool1d": "MaxPooling1D", "MaxPool2d": "MaxPooling2D", "MaxPool3d": "MaxPooling3D",
    "AvgPool1d": "AveragePooling1D", "AvgPool2d": "AveragePooling2D",
    "AvgPool3d": "AveragePooling3D", "AdaptiveAvgPool1d": "AdaptiveAveragePooling1D",
    "AdaptiveAvgPool2d": "AdaptiveAveragePooling2D", "AdaptiveMaxPool2d":
    "AdaptiveMaxPooling2D", "Upsample": "UpSampling2D", "ZeroPad2d": "ZeroPadding2D",
    "RNN": "SimpleRNN", "ReLU": "relu", "GELU": "gelu", "Tanh": "tanh", "Sigmoid": "sigmoid",
    "Softmax": "softmax", "SiLU": "silu", "ELU": "elu", "LeakyReLU": "leaky_relu",
    "Softplus": "softplus", "Hardswish": "hard_swish", "Hardsigmoid": "hard_sigmoid",
    "ReLU6": "relu6", "Mish": "mish", "SELU": "selu", "PReLu": "PReLU", "Identity": "identity",
    "Sequential": None, "ModuleList": None,
}


# Module prefixes that Python code puts before layer and function names (`nn.Linear`,
# `tf.keras.layers.Dense`, `F.relu`): graphdsl names layers and functions bare.
FRAMEWORK_MODULES = frozenset({"nn", "torch", "F", "tf", "keras", "layers", "np", "jnp",
                               "activations", "losses", "optimizers", "initializers"})


def framework_path(e: ast.Attribute) -> list[str] | None:
    """`nn.Linear` -> ["nn", "Linear"] when the chain starts at a framework module name."""
    parts = [e.attr]
    base: ast.Expr = e.value
    while isinstance(base, ast.Attribute):
        parts.append(base.attr)
        base = base.value
    if isinstance(base, ast.Name) and base.id in FRAMEWORK_MODULES:
        return [base.id, *reversed(parts)]
    return None


def framework_help(name: str) -> str:
    if name in SPEC_ALIASES:  # `torch.optim.Adam`, `nn.init.xavier_uniform_`
        return f"graphdsl spells it `{SPEC_ALIASES[name]}`"
    target = FRAMEWORK_NAMES.get(name, name)
    if target is not None and target in REGISTRY or name in SPEC_TABLES.get("activation", {}):
        return f"write `{target}` without the module prefix"
    hint = habit_help(name)
    if hint is not None:
        return hint
    return suggestion_help(name, list(REGISTRY)) or (
        "layers, activations and functions are written by their bare Keras names "
        "(`Dense`, `relu`, ...); docs/ops.md lists them")


# Keras' and PyTorch's names of losses, metrics and functions that graphdsl spells shorter.
OTHER_SPELLINGS = {
    "categorical_crossentropy": "crossentropy", "sparse_categorical_crossentropy":
    "crossentropy", "CrossEntropyLoss": "crossentropy", "cross_entropy": "crossentropy",
    "nll_loss": "crossentropy", "BCELoss": "binary_crossentropy", "BCEWithLogitsLoss":
    "binary_crossentropy", "binary_cross_entropy": "binary_crossentropy",
    "binary_cross_entropy_with_logits": "binary_crossentropy", "MSELoss": "mse",
    "mean_squared_error": "mse", "mse_loss": "mse", "L1Loss": "mae", "l1_loss": "mae",
    "mean_absolute_error": "mae", "HuberLoss": "huber", "SmoothL1Loss": "huber",
    "huber_loss": "huber", "sparse_categorical_accuracy": "accuracy", "categorical_accuracy":
    "accuracy", "cat": "concat",
    "reduce_mean": "mean", "reduce_sum": "sum", "reduce_max": "max", "reduce_min": "min",
    "unsqueeze": "expand_dims", "view": "reshape", "permute": "transpose", "detach":
    "stop_gradient",
}


def habit_help(name: str) -> str | None:
    if name in HABITS:
        return HABITS[name]
    if name in MERGE_LAYERS:
        return f"a merge layer is called on its tensors where it is made: `{name}()([a, b])`"
    if name in ONE_TENSOR_LAYERS:
        return f"a layer without weights is called where it is made: `{name}(...)(x)`"
    if name in OTHER_SPELLINGS:
        return f"graphdsl spells it `{OTHER_SPELLINGS[name]}`"
    if name in FRAMEWORK_NAMES:
        target = FRAMEWORK_NAMES[name]
        if target is None:
            return ("graphdsl has no containers: write the layers one after another, or use "
                    "a `block` and `repeat`")
        if target in REGISTRY:
            return f"`{name}` is PyTorch's name: graphdsl uses Keras' `{target}`"
    return None


def arithmetic_reason(exc: Exception) -> str:
    """Why constant arithmetic failed, in the language's words rather than Python's."""
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, OverflowError):
        return "the result is too large"
    if isinstance(exc, TypeError):
        return "these values cannot be combined this way"
    return "the result is not a number"
