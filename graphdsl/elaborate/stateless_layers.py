"""Keras' layers without weights, written as a Keras functional model writes them: the merge
layers, `Concatenate(axis = 1)([a, b])`, `Add()([a, b, c])`, `Dot(axes = 1)([q, k])`, and
the activation and reshaping layers, `ReLU(6.0)(x)`, `LeakyReLU(negative_slope = 0.2)(x)`,
`Softmax(axis = 1)(x)`, `ELU(alpha)(x)`, `Permute([2, 1])(x)`, `RepeatVector(n)(x)`,
`Identity()(x)`. Each call is the same program written with the language's own operators
and functions (`concat`, `+`, `maximum`, `einsum`, `relu`, `transpose`), so the registry,
the shape checks and both backends are the ones those already have. Such a layer holds no
weights: `name =` is accepted and has nothing to name, and it is called where it is made.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import source_text
from graphdsl.elaborate.values import (
    POISON,
    LayerValue,
    Poison,
    Scope,
    Tensor,
    describe,
    lookup_global,
)
from graphdsl.ops.registry import REQUIRED
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:
    from graphdsl.elaborate.core import Elaborator

# Keras name -> (its arguments with their defaults, the fewest tensors it merges)
MERGE_LAYERS: dict[str, tuple[dict[str, Any], int]] = {
    "Concatenate": ({"axis": -1}, 1), "Add": ({}, 1), "Subtract": ({}, 2),
    "Multiply": ({}, 1), "Average": ({}, 1), "Maximum": ({}, 1), "Minimum": ({}, 1),
    "Dot": ({"axes": None, "normalize": False}, 2),
    # Luong's dot-product attention over [query, value] or [query, value, key]
    "Attention": ({"use_scale": False, "score_mode": "dot"}, 2),
}


# Keras' functional forms, `layers.add([a, b])`, `layers.concatenate([a, b], axis = 1)`:
# the same merges (a call with one list literal; `add(a, b)` stays the binary function).
FUNCTION_FORMS = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply",
                  "average": "Average", "maximum": "Maximum", "minimum": "Minimum",
                  "concatenate": "Concatenate", "dot": "Dot"}


# Keras name -> its arguments, with their defaults (REQUIRED: none), applied to one tensor
ONE_TENSOR_LAYERS: dict[str, dict[str, Any]] = {
    "ReLU": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
    "LeakyReLU": {"negative_slope": 0.3},
    "Softmax": {"axis": -1}, "ELU": {"alpha": 1.0}, "Identity": {},
    "Permute": {"dims": REQUIRED}, "RepeatVector": {"n": REQUIRED},
}


# The functions the rewritten programs call. They are read under names no program can
# write, so an output or a variable called `relu` cannot stand in for the function.
FUNCTIONS = ("concat", "maximum", "minimum", "einsum", "l2_normalize", "expand_dims", "relu",
             "relu6", "elu", "exp", "softmax", "transpose", "reshape")

# Layers that act on each position of the last axis alone: TimeDistributed(L)(x) is L(x).
PER_POSITION = {"Dense", "Activation", "Dropout", "LayerNormalization", "BatchNormalization",
                "Embedding", "Rescaling"}


def _fn(span: Any, name: str) -> ast.Name:
    return ast.Name(span, f"<function {name}>")


class StatelessLayers:
    def __init__(self, el: Elaborator):
        self.el = el

    def is_time_distributed(self, e: ast.Call, scope: Scope) -> bool:
        inner = e.func
        return isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and \
            inner.func.id == "TimeDistributed" and "TimeDistributed" not in scope.env and \
            lookup_global("TimeDistributed", scope.namespace) is None

    def time_distributed(self, e: ast.Call, scope: Scope) -> Any:
        """`TimeDistributed(layer)(x)`: the layer on each step of x [B, T, ...]. A layer that
        acts on the last axis alone (Dense, Embedding, LayerNormalization, ...) is simply
        called on x; any other runs on the steps folded into the batch, [B * T, ...], which
        needs the step count and the sizes after it known."""
        wrapper = e.func
        assert isinstance(wrapper, ast.Call)
        if len(wrapper.args) != 1 or wrapper.keywords or len(e.args) != 1 or e.keywords:
            self.el.sink.error("argument-type", "`TimeDistributed` wraps one layer and is "
                               "called on one tensor: `TimeDistributed(Dense(8))(x)`", e.span)
            return POISON
        inner, x_expr = wrapper.args[0], e.args[0]
        x = self.el.expressions.eval(x_expr, scope)
        if isinstance(x, Poison):
            return POISON
        layer = self.el.expressions.eval(inner, scope)
        if isinstance(layer, Poison):
            return POISON
        if not isinstance(layer, LayerValue):
            self.el.sink.error("argument-type", "`TimeDistributed` wraps a layer, got "
                               f"{describe(layer)}", inner.span)
            return POISON
        if not isinstance(x, Tensor) or x.type.shape is None or len(x.type.shape) < 3:
            self.el.sink.error("shape-mismatch", "`TimeDistributed` takes a tensor [B, T, "
                               f"...], got {describe(x)}", x_expr.span)
            return POISON
        span = e.span
        names = ["<TimeDistributed layer>", "<TimeDistributed input>"]
        scope.env.update(zip(names, (layer, x), strict=True))
        names += self._bind_functions(scope)
        try:
            layer_ref, x_ref = (ast.Name(span, n) for n in names[:2])
            plain = all(layer.args.get(k) in (None, -1) for k in ("axis", "noise_shape"))
            if layer.op.name in PER_POSITION and plain:
                return self.el.expressions.eval(ast.Call(span, layer_ref, (x_ref,), ()),
                                                scope)
            steps, rest = x.type.shape[1], list(x.type.shape[2:])
            if not all(isinstance(d, int) for d in (steps, *rest)):
                self.el.sink.error("unknown-dimension", f"`TimeDistributed({layer.op.name})` "
                                   f"folds the steps into the batch, so it needs them and "
                                   f"the sizes after them known; the input is {x.type}",
                                   x_expr.span, help="give the input a fixed number of steps")
                return POISON
            folded = ast.Call(span, _fn(span, "reshape"), (x_ref, _literal([-1, *rest], span)),
                              ())
            y = self.el.expressions.eval(ast.Call(span, layer_ref, (folded,), ()), scope)
            if not isinstance(y, Tensor) or y.type.shape is None or \
                    not all(isinstance(d, int) for d in y.type.shape[1:]):
                return POISON if not isinstance(y, Tensor) else y
            scope.env["<TimeDistributed output>"] = y
            names.append("<TimeDistributed output>")
            return self.el.expressions.eval(ast.Call(
                span, _fn(span, "reshape"), (ast.Name(span, "<TimeDistributed output>"),
                                             _literal([-1, steps, *y.type.shape[1:]], span)),
                ()), scope)
        finally:
            for n in names:
                del scope.env[n]

    def is_stateless_call(self, e: ast.Call, scope: Scope) -> bool:
        """`Concatenate(...)([...])`, `concatenate([...], ...)` or `ReLU(...)(x)`, where the
        program does not define the name itself."""
        inner = e.func
        if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name):
            return (inner.func.id in MERGE_LAYERS or inner.func.id in ONE_TENSOR_LAYERS) \
                and inner.func.id not in scope.env and \
                lookup_global(inner.func.id, scope.namespace) is None
        return isinstance(inner, ast.Name) and inner.id in FUNCTION_FORMS and \
            inner.id not in scope.env and len(e.args) == 1 and \
            isinstance(e.args[0], ast.ListExpr)

    def call(self, e: ast.Call, scope: Scope) -> Any:
        if isinstance(e.func, ast.Call) and isinstance(e.func.func, ast.Name) and \
                e.func.func.id in ONE_TENSOR_LAYERS:
            return self.one_tensor(e, e.func.func.id, scope)
        if isinstance(e.func, ast.Call):  # Concatenate(axis = 1)([a, b])
            assert isinstance(e.func.func, ast.Name)
            name = e.func.func.id
            args = self._arguments(name, e.func.args, e.func.keywords)
            items = self._tensors(name, e)
        else:  # concatenate([a, b], axis = 1)
            assert isinstance(e.func, ast.Name)
            name = FUNCTION_FORMS[e.func.id]
            args = self._arguments(name, (), e.keywords)
            items = self._tensors(name, ast.Call(e.span, e.func, e.args, ()))
        if args is None or items is None:  # still check what the tensors are made of
            for a in e.args:
                for item in a.items if isinstance(a, ast.ListExpr) else (a,):
                    self.el.expressions.eval(item, scope)
            return POISON
        # each tensor is computed once; the rewritten call reads it under a name no
        # program can write
        values = [self.el.expressions.eval(item, scope) for item in items]
        if any(isinstance(v, Poison) for v in values):
            return POISON
        names = [f"<{name} tensor {i}>" for i in range(len(values))]
        refs: list[ast.Expr] = [ast.Name(item.span, n) for item, n in zip(items, names,
                                                                          strict=True)]
        scope.env.update(zip(names, values, strict=True))
        names += self._bind_functions(scope)
        try:
            rewritten = self._rewrite(name, args, refs, values, e, scope)
            return POISON if rewritten is None else self.el.expressions.eval(rewritten, scope)
        finally:
            for n in names:
                del scope.env[n]

    def _bind_functions(self, scope: Scope) -> list[str]:
        names = []
        for function in FUNCTIONS:
            names.append(_fn(None, function).id)
            scope.env[names[-1]] = lookup_global(function, scope.namespace)
        return names

    def one_tensor(self, e: ast.Call, name: str, scope: Scope) -> Any:
        layer = e.func
        assert isinstance(layer, ast.Call)
        args = self._arguments(name, layer.args, layer.keywords, ONE_TENSOR_LAYERS[name])
        if len(e.args) != 1 or e.keywords:
            self.el.sink.error("argument-type", f"`{name}(...)` is called on one tensor: "
                               f"`{name}()(x)`", e.span)
            args = None
        if args is None:
            for a in e.args:
                self.el.expressions.eval(a, scope)
            return POISON
        value = self.el.expressions.eval(e.args[0], scope)
        if isinstance(value, Poison):
            return POISON
        ref = f"<{name} input>"
        scope.env[ref] = value
        bound = [ref, *self._bind_functions(scope)]
        try:
            consts = {k: self.el.expressions.eval(v, scope) for k, v in args.items()}
            if any(isinstance(c, Poison) for c in consts.values()):
                return POISON
            rewritten = self._one_tensor_rewrite(name, {k: getattr(c, "value", c) for k, c in
                                                        consts.items()},
                                                 ast.Name(e.args[0].span, ref), value, e)
            return POISON if rewritten is None else self.el.expressions.eval(rewritten, scope)
        finally:
            for n in bound:
                del scope.env[n]

    def _one_tensor_rewrite(self, name: str, given: dict[str, Any], x: ast.Expr, value: Any,
                            e: ast.Call) -> ast.Expr | None:
        span = e.span
        a = {**{k: v for k, v in ONE_TENSOR_LAYERS[name].items() if v is not REQUIRED},
             **given}

        def call(func: str, *positional: ast.Expr, **keywords: Any) -> ast.Call:
            return ast.Call(span, _fn(span, func), tuple(positional),
                            tuple(ast.Keyword(k, _literal(v, span), span)
                                  for k, v in keywords.items()))

        def number(v: float) -> ast.Number:
            return ast.Number(span, float(v))

        def negative_part(slope: float) -> ast.Expr:  # slope * min(x, 0)
            return ast.BinOp(span, "*", number(-slope),
                             call("relu", ast.UnaryOp(span, "-", x)))

        if name == "Identity":
            return x
        if name == "Softmax":
            return call("softmax", x, axis=a["axis"])
        if name == "ELU":
            if a["alpha"] == 1.0:
                return call("elu", x)
            # x for x > 0, alpha (exp(x) - 1) below
            return ast.BinOp(span, "+", call("relu", x), ast.BinOp(
                span, "*", number(a["alpha"]),
                ast.BinOp(span, "-", call("exp", call("minimum", x, number(0.0))),
                          number(1.0))))
        if name in ("ReLU", "LeakyReLU"):
            if a.get("threshold", 0.0) != 0.0:
                self.el.sink.error("argument-value", "`ReLU` with a `threshold` other than 0 "
                                   "is not supported", span,
                                   help="shift the input: `ReLU()(x - t) + t` where x > t")
                return None
            top: ast.Expr = call("relu", x)
            if a.get("max_value") is not None:
                top = call("relu6", x) if a["max_value"] == 6 else \
                    call("minimum", top, number(a["max_value"]))
            slope = a["negative_slope"]
            return top if slope == 0 else ast.BinOp(span, "+", top, negative_part(slope))
        if name == "Permute":
            dims = a["dims"]
            if not isinstance(dims, (list, tuple)) or sorted(dims) != list(
                    range(1, len(dims) + 1)):
                self.el.sink.error("argument-value", "`dims` of `Permute` is an order of the "
                                   "axes after the batch, counted from 1: `Permute([2, 1])`",
                                   span)
                return None
            return call("transpose", x, perm=[0, *dims])
        # RepeatVector: [B, d] -> [B, n, d]
        n = a["n"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            self.el.sink.error("argument-value", "`n` of `RepeatVector` is a positive int",
                               span)
            return None
        step = call("expand_dims", x, axis=1)
        return call("concat", ast.ListExpr(span, (step,) * n), axis=1)

    def _arguments(self, name: str, positional: tuple[ast.Expr, ...],
                   keywords: tuple[ast.Keyword, ...],
                   defaults: dict[str, Any] | None = None) -> dict[str, ast.Expr] | None:
        defaults = MERGE_LAYERS[name][0] if defaults is None else defaults
        names = list(defaults)
        if len(positional) > len(names):
            self.el.sink.error("too-many-arguments", f"`{name}` takes "
                               + (", ".join(f"`{n}`" for n in names) or "no arguments"),
                               positional[len(names)].span,
                               help=f"the tensors go in the second call: `{name}()([a, b])`")
            return None
        given = dict(zip(names, positional, strict=False))
        for k in keywords:
            if k.name == "name":
                continue  # nothing to name: a merge layer holds no weights
            if k.name not in defaults:
                self.el.sink.error("unknown-argument", f"`{name}` has no argument `{k.name}`",
                                   k.span, help=f"its arguments: {', '.join(names)}"
                                   if names else f"`{name}` takes no arguments")
                return None
            given[k.name] = k.value
        missing = [n for n, d in defaults.items() if d is REQUIRED and n not in given]
        if missing:
            self.el.sink.error("missing-argument", f"`{name}` needs `{missing[0]}`",
                               keywords[0].span if keywords else
                               positional[0].span if positional else None)
            return None
        return given

    def _tensors(self, name: str, e: ast.Call) -> list[ast.Expr] | None:
        fewest = MERGE_LAYERS[name][1]
        if len(e.args) == 1 and not e.keywords and isinstance(e.args[0], ast.ListExpr) and \
                len(e.args[0].items) >= fewest:
            if name == "Attention" and len(e.args[0].items) > 3:
                self.el.sink.error("argument-value", "`Attention` takes [query, value] or "
                                   f"[query, value, key], got {len(e.args[0].items)} tensors",
                                   e.args[0].span)
                return None
            if name in ("Subtract", "Dot") and len(e.args[0].items) != 2:
                self.el.sink.error("argument-value", f"`{name}` merges exactly two tensors, "
                                   f"got {len(e.args[0].items)}", e.args[0].span)
                return None
            return list(e.args[0].items)
        where = e.args[0].span if e.args else e.span
        self.el.sink.error("argument-type", f"`{name}(...)` is called on a list of tensors "
                           f"written out: `{name}()([a, b])`", where,
                           help="merge layers take their tensors as one list literal")
        return None

    def _rewrite(self, name: str, args: dict[str, ast.Expr], items: list[ast.Expr],
                 values: list[Any], e: ast.Call, scope: Scope) -> ast.Expr | None:
        span = e.span

        def call(func: str, *positional: ast.Expr, **keywords: ast.Expr) -> ast.Call:
            return ast.Call(span, _fn(span, func), tuple(positional),
                            tuple(ast.Keyword(k, v, span) for k, v in keywords.items()))

        def chain(op: str) -> ast.Expr:
            result = items[0]
            for item in items[1:]:
                result = ast.BinOp(span, op, result, item)
            return result

        if name == "Concatenate":
            return call("concat", ast.ListExpr(span, tuple(items)),
                        axis=args.get("axis", ast.Number(span, -1)))
        if name == "Add":
            return chain("+")
        if name == "Subtract":
            return ast.BinOp(span, "-", items[0], items[1])
        if name == "Multiply":
            return chain("*")
        if name == "Average":
            return ast.BinOp(span, "/", chain("+"), ast.Number(span, float(len(items))))
        if name in ("Maximum", "Minimum"):
            result = items[0]
            for item in items[1:]:
                result = call(name.lower(), result, item)
            return result
        if name == "Attention":
            return self._attention(args, items, values, span, scope)
        return self._dot(args, items, values, span, scope)

    def _attention(self, args: dict[str, ast.Expr], items: list[ast.Expr], values: list[Any],
                   span: Any, scope: Scope) -> ast.Expr | None:
        """keras.layers.Attention without a learned scale: softmax(q k^T) v per sample, the
        key being the value unless given."""
        for arg, plain in (("use_scale", False), ("score_mode", "dot")):
            given = args.get(arg)
            value = getattr(self.el.expressions.eval(given, scope), "value", None) \
                if given is not None else plain
            if value != plain:
                self.el.sink.error("argument-value", f"`Attention` with `{arg} = "
                                   f"{source_text(value)}` is not supported: only Luong's "
                                   "plain dot-product scores", given.span if given else span,
                                   help="a learned scale is a `param` times the scores: "
                                        "write the attention with `einsum` and `softmax`")
                return None
        if not all(isinstance(v, Tensor) and v.type.shape is not None and
                   len(v.type.shape) == 3 for v in values):
            self.el.sink.error("shape-mismatch", "`Attention` takes tensors [B, T, dim]", span)
            return None
        query, value = items[0], items[1]
        key = items[2] if len(items) == 3 else value

        def einsum(spec: str, a: ast.Expr, b: ast.Expr) -> ast.Expr:
            return ast.Call(span, _fn(span, "einsum"), (ast.String(span, spec), a, b), ())

        scores = einsum("bqd,bkd->bqk", query, key)
        weights = ast.Call(span, _fn(span, "softmax"), (scores,),
                           (ast.Keyword("axis", ast.Number(span, -1), span),))
        return einsum("bqk,bkd->bqd", weights, value)

    def _dot(self, args: dict[str, ast.Expr], items: list[ast.Expr], values: list[Any],
             span: Any, scope: Scope) -> ast.Expr | None:
        """keras.layers.Dot: contract axis axes[0] of a with axes[1] of b, per sample; the
        other axes of a, then of b; a product of two vectors is [B, 1]."""
        left, right = values
        if not (isinstance(left, Tensor) and isinstance(right, Tensor)):
            self.el.sink.error("argument-type", "`Dot` merges two tensors", span)
            return None
        if left.type.shape is None or right.type.shape is None:
            return None
        axes_expr = args.get("axes")
        axes = self.el.expressions.eval(axes_expr, scope) if axes_expr is not None else None
        value = getattr(axes, "value", None)
        pair = [value, value] if isinstance(value, int) else list(value) \
            if isinstance(value, (list, tuple)) and len(value) == 2 else None
        ranks = (len(left.type.shape), len(right.type.shape))
        if pair is None or not all(isinstance(a, int) for a in pair) or \
                not all(-r < a < r and a % r != 0 for a, r in zip(pair, ranks, strict=True)):
            self.el.sink.error("argument-value", "`axes` of `Dot` is an axis (or one per "
                               "tensor) other than the batch axis", axes_expr.span
                               if axes_expr is not None else span,
                               help="`Dot(axes = 1)([a, b])` for two [B, d] tensors")
            return None
        pair = [a % r for a, r in zip(pair, ranks, strict=True)]
        sizes = (left.type.shape[pair[0]], right.type.shape[pair[1]])
        if sizes[0] != sizes[1]:
            self.el.sink.error("shape-mismatch", f"`Dot` contracts axis {pair[0]} of "
                               f"{left.type} with axis {pair[1]} of {right.type}: {sizes[0]} "
                               f"and {sizes[1]} differ", span,
                               help="choose `axes` whose sizes are equal")
            return None
        letters = iter(string.ascii_lowercase)
        batch, contracted = next(letters), next(letters)
        a_axes = [batch] + [contracted if i == pair[0] else next(letters)
                            for i in range(1, ranks[0])]
        b_axes = [batch] + [contracted if i == pair[1] else next(letters)
                            for i in range(1, ranks[1])]
        out = [batch] + [x for x in a_axes[1:] + b_axes[1:] if x != contracted]
        a, b = items
        normalize = args.get("normalize")
        if normalize is not None and getattr(self.el.expressions.eval(normalize, scope),
                                             "value", False) is True:
            a = ast.Call(span, _fn(span, "l2_normalize"), (a,),
                         (ast.Keyword("axis", ast.Number(span, pair[0]), span),))
            b = ast.Call(span, _fn(span, "l2_normalize"), (b,),
                         (ast.Keyword("axis", ast.Number(span, pair[1]), span),))
        spec = f"{''.join(a_axes)},{''.join(b_axes)}->{''.join(out)}"
        product: ast.Expr = ast.Call(span, _fn(span, "einsum"),
                                     (ast.String(span, spec), a, b), ())
        if len(out) == 1:  # two vectors per sample: [B] -> [B, 1], as Keras returns
            product = ast.Call(span, _fn(span, "expand_dims"), (product,),
                               (ast.Keyword("axis", ast.Number(span, -1), span),))
        return product


def _literal(value: Any, span: Any) -> ast.Expr:
    """A constant as the expression that writes it."""
    if isinstance(value, ast.Expr):
        return value
    if isinstance(value, (list, tuple)):
        return ast.ListExpr(span, tuple(_literal(v, span) for v in value))
    if isinstance(value, bool):
        return ast.Bool(span, value)
    return ast.Number(span, value)
