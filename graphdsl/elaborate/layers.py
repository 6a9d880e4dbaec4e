"""Layers and their parameters: construction, ties and structured weights, initialisers,
constraints, kernel masks, reuse of shared layers."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
    did_you_mean,
    source_text,
)
from graphdsl.elaborate.values import (
    POISON,
    Const,
    LayerValue,
    Poison,
    Scope,
    Tensor,
    TupleValue,
    _split_param_arg,
    argument_alias,
    argument_help,
    argument_spans,
    describe,
    has_error_dim,
    jsonable_args,
)
from graphdsl.ir.graph import LayerRecord
from graphdsl.ir.types import (
    Shape,
    ShapeError,
    TensorType,
    shape_str,
)
from graphdsl.ops.registry import (
    LAYER_ARGS,
    Arg,
    OpDef,
    ParamSpec,
    param_args,
)
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


class LayerRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el

    def construct_layer(self, op: OpDef, e: ast.Call, scope: Scope) -> Any:
        """`Dense(10, activation = relu)`: check the arguments, make a LayerValue."""
        e = wrapped_layer_call(op, e)
        wrapped = e.args[0] if e.args and op.arg("layer") is not None else None
        if isinstance(wrapped, ast.Call) and isinstance(wrapped.func, ast.Name):
            choices = op.arg("layer").choices or ()  # type: ignore[union-attr]
            self.el.sink.error("argument-value", f"`{op.name}` wraps one of "
                               f"{', '.join(choices)}, got `{wrapped.func.id}`", wrapped.span)
            return POISON
        args: dict[str, Any] = {}
        overrides: dict[str, Tensor] = {}
        masks: dict[str, Any] = {}
        specs: dict[str, dict[str, Spec]] = {}
        trainable = True
        ok = True
        extra = {a.name: a for spec in op.params for a in param_args(spec)}
        for spec in op.params:
            if spec.role == "weight":
                extra[f"{spec.name}_mask"] = Arg(f"{spec.name}_mask", "any", None, optional=True)
        layer_args = {a.name: a for a in LAYER_ARGS}
        params = {p.name: p for p in op.params}
        if len(e.args) > len(op.args):
            self.el.sink.error("too-many-arguments", f"`{op.name}` takes at most {len(op.args)} "
                            f"positional argument{'s' * (len(op.args) != 1)}, got "
                            f"{len(e.args)}", e.args[len(op.args)].span,
                            help=arguments_help(op))
            ok = False
        given: dict[str, tuple[ast.Expr, Span]] = {}
        for a, expr in zip(op.args, e.args, strict=False):
            given[a.name] = (expr, expr.span)
        for k in e.keywords:
            if k.name in given:
                self.el.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                k.span)
                ok = False
            given[k.name] = (k.value, k.span)
        meant: set[str] = set()  # arguments that a misspelt keyword stands for
        for name, (expr, span) in given.items():
            if name in params:
                value = self.el.expressions.eval(expr, scope)
                if isinstance(value, Const) and isinstance(value.value, bool) and \
                        f"use_{name}" in {a.name for a in op.args}:
                    # `bias = false` (PyTorch's nn.Linear(bias=False)): `bias` is the tensor
                    self.el.sink.error("argument-type", f"`{name}` of `{op.name}` is its "
                                       f"{name} tensor (to tie it), got {source_text(value.value)}",
                                       expr.span, help=f"to leave the {name} out, write "
                                       f"`use_{name} = {source_text(value.value)}`")
                    ok = False
                    continue
                if isinstance(value, Const):
                    value = self.el.opcalls.constant(value, "float32")
                if isinstance(value, Tensor):
                    overrides[name] = Tensor(value.node, value.index, value.type, expr.span)
                elif not isinstance(value, Poison):
                    self.el.sink.error("argument-type", f"`{name}` of `{op.name}` takes a tensor "
                                    f"(a tie or a structured weight), got {describe(value)}",
                                    expr.span)
                    ok = False
                else:
                    ok = False
                continue
            arg = op.arg(name) or extra.get(name) or layer_args.get(name)
            if arg is None or name in {a.name for a in op.call_args}:
                candidates = [*(a.name for a in op.args), *extra, *layer_args, *params]
                self.el.sink.error("unknown-argument", f"`{op.name}` has no argument `{name}`",
                                span, help=argument_help(name, candidates) or
                                arguments_help(op))
                ok = False
                # the argument it was meant to be is not also missing
                meant.update(did_you_mean(name, [a.name for a in op.args]))
                meant.add(argument_alias(name, [a.name for a in op.args]) or "")
                continue
            value = self.el.opcalls.check_arg(op, arg, expr, scope)
            if isinstance(value, Poison):
                ok = False
                args[name] = POISON
                continue
            if name == "trainable":
                trainable = bool(value)
            elif name == "name":
                pass
            elif name in extra:
                pname, _, what = name.partition("_") if False else _split_param_arg(name, params)
                if what == "mask":
                    masks[pname] = value
                elif value is not None:
                    specs.setdefault(pname, {})[what] = value
            else:
                args[name] = value
        for a in op.args:
            if a.name not in args:
                if a.required:
                    if a.name not in meant:
                        self.el.sink.error("missing-argument", f"`{op.name}` needs `{a.name}`",
                                           e.span, help=f"e.g. `{op.name}({a.name} = ...)`")
                    ok = False
                else:
                    args[a.name] = a.default
        if not ok:
            return POISON
        layer = LayerValue(op, args, overrides, masks, specs, e.span, trainable,
                           arg_spans={name: expr.span for name, (expr, _) in given.items()})
        if "name" in given:
            name_value = self.el.expressions.eval(given["name"][0], scope)
            if isinstance(name_value, Const) and isinstance(name_value.value, str) and \
                    not name_value.value.isidentifier():
                # a path part: "a b", "" or "enc.proj" would not name one layer
                self.el.sink.error("argument-value", "`name` must be a plain name (letters, "
                                   f"digits and `_`), got {source_text(name_value.value)}",
                                   name_value.span)
                return POISON
            if isinstance(name_value, Const) and isinstance(name_value.value, str):
                name = name_value.value
                if scope.taken.get(scope.local(name), None) == name_value.span:
                    pass  # the same call again, a copy of a `repeat`: it names the copies
                elif scope.local(name) in scope.taken:
                    first = scope.taken[scope.local(name)]
                    self.el.sink.error(
                        "duplicate-definition", f"two layers are named `{name}`: their "
                        "parameters would collide in the checkpoint", name_value.span,
                        notes=[Note("the name is first taken here", first)] if first else [],
                        help="give each layer its own name")
                else:  # after the error the layer keeps an automatic name: no echoes
                    layer.path = scope.claim(name, name_value.span)
        return layer

    def call_layer(self, layer: LayerValue, args: list[Any],
                   keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        op = layer.op
        if layer.path is None:
            layer.path = scope.auto_path(op.snake_name, e.span)
        settled = self.el.calls.settle(layer, scope)
        if settled is None:
            return POISON
        layer = settled
        inputs, call_args = self.el.opcalls.bind_inputs(op, args, keywords, e, call_args=op.call_args)
        if inputs is None:
            return POISON
        # Parameter shape rules see the inputs aligned with the op's declared inputs.
        aligned = [inputs.get(i.name) if isinstance(inputs.get(i.name), Tensor) else None
                   for i in op.inputs]
        if layer.params is None:
            if not self.build_params(layer, aligned, e.span):
                return POISON
        elif not self.check_reuse(layer, aligned, e.span):
            return POISON
        assert layer.params is not None
        layer.calls += 1
        record = self.el.g.layers.get(layer.path or "")
        result = self.el.opcalls.make_op(op, inputs, {**layer.args, **call_args}, e.span,
                              params=layer.params, layer=layer.path,
                              arg_spans={**layer.arg_spans, **argument_spans(op, e)})
        if record is not None and isinstance(result, (Tensor, TupleValue)):
            first_out = result if isinstance(result, Tensor) else result.items[0]
            record.calls.append(first_out.node)
        return result

    def build_params(self, layer: LayerValue, inputs: list[Tensor | None], span: Span) -> bool:
        op = layer.op
        types = [t.type if t is not None else None for t in inputs]
        if any(t is not None and (t.shape is None or has_error_dim(t.shape)) for t in types):
            return False  # already reported
        params: dict[str, Tensor] = {}
        record = LayerRecord(layer.path or "?", op.name, jsonable_args(layer.args), layer.span,
                             trainable=layer.trainable)
        ok = True
        for spec in op.params:
            if not spec.present(layer.args):
                continue
            try:
                shape = tuple(spec.shape(layer.args, types))  # type: ignore[arg-type]
            except ShapeError as exc:
                self.el.sink.error(exc.code, f"`{op.name}`: {exc.message}", span, help=exc.help)
                return False
            except (IndexError, TypeError):
                rank = types[0].rank if types and types[0] is not None else None
                self.el.sink.error("shape-mismatch", f"`{op.name}` cannot take an input of rank "
                                f"{rank}: got {types[0]}", span)
                return False
            layer.param_shapes[spec.name] = shape
            if spec.name in layer.overrides:
                given = layer.overrides[spec.name]
                if given.type.shape is not None and tuple(given.type.shape) != shape:
                    self.el.sink.error(
                        "tie-shape", f"`{spec.name}` of `{op.name}` must be "
                        f"[{', '.join(map(str, shape))}] ({spec.layout}), got {given.type}",
                        given.span, notes=[Note(f"the layer is `{layer.path}`", layer.span)],
                        help="a transposed use is written `.T`" if given.type.shape and
                        tuple(reversed(given.type.shape)) == shape else None)
                    ok = False
                params[spec.name] = given
                record.params[spec.name] = given.node
                continue
            params[spec.name] = self.new_param(layer, spec, shape, span)
            record.params[spec.name] = params[spec.name].node
        for pname in layer.masks:
            if pname in layer.overrides:
                self.el.sink.error("argument-value", f"`{pname}_mask` cannot apply to a tied "
                                f"`{pname}`", span)
                ok = False
        if not ok:
            return False
        previous = self.el.g.layers.get(record.path)
        if previous is not None:
            self.el.sink.error("duplicate-definition", f"two layers are named `{record.path}`",
                               span, notes=[Note("the other layer is made here",
                                                 previous.span)],
                               help="a name given with `name =` names one layer")
            return False
        layer.params = params
        self.el.g.layers[record.path] = record
        return True

    def new_param(self, layer: LayerValue, spec: ParamSpec, shape: Shape, span: Span) -> Tensor:
        path = f"{layer.path}.{spec.name}"
        specs = layer.specs.get(spec.name, {})
        default = spec.init
        if default == "lstm_bias" and not layer.args.get("unit_forget_bias", True):
            default = "zeros"
        init = specs.get("initializer") or default_spec("initializer", default)
        constraint = specs.get("constraint")
        if constraint is not None:
            self.check_constraint_axis(
                constraint, shape, layer.arg_spans.get(f"{spec.name}_constraint", span))
        mask = layer.masks.get(spec.name)
        if mask is not None:
            mask = self.check_kernel_mask(mask, shape,
                                          layer.arg_spans.get(f"{spec.name}_mask", span))
        self.check_init_shape(init, shape, f"{path}", span)
        t = TensorType("float32", shape)
        node = self.el.add_node("param:", kind="param", name=path, type=t, role=spec.role,
                             trainable=layer.trainable and spec.role == "weight", init=init,
                             constraint=constraint, kernel_mask=mask, owner=layer.path,
                             span=layer.span)
        self.el.g.params.append(node)
        if "regularizer" in specs:
            self.el.regularizers.append((node, specs["regularizer"], layer.span))
        return Tensor(node, 0, t, layer.span)

    def check_constraint_axis(self, constraint: Spec, shape: Shape, span: Span) -> None:
        axis = constraint.get("axis")
        if isinstance(axis, int) and not -len(shape) <= axis < max(len(shape), 1):
            self.el.sink.error("argument-value", f"`{constraint.name}`: axis {axis} is out of "
                            f"range for a parameter of rank {len(shape)}", span)

    def check_init_shape(self, init: Spec, shape: Shape, what: str, span: Span) -> None:
        """Initialisers whose shape is fixed (a file, identity) must fit the parameter."""
        if init.name == "identity" and len(shape) != 2:
            self.el.sink.error("shape-mismatch", f"`identity()` makes a matrix, but `{what}` is "
                            f"{shape_str(shape)}", span)
        if init.name != "from_file" or (self.el.missing_files_ok and
                                         not os.path.isfile(init["path"])):
            return
        from graphdsl.runtime.weights import file_shape

        try:
            found = file_shape(init["path"])
        except (OSError, ValueError) as exc:
            self.el.sink.error("argument-value", f"`from_file`: cannot read {init['path']}: "
                               f"{unreadable_array_reason(init['path'], exc)}", span,
                               help="a .npy file saved by numpy.save, or a text file of "
                                    "numbers separated by spaces, one row per line")
            return
        if tuple(found) != tuple(shape):
            self.el.sink.error("shape-mismatch", f"`from_file` holds an array of shape "
                            f"{shape_str(tuple(found))}, but `{what}` is {shape_str(shape)}",
                            span, help="make the layer match the file, or the file the layer")

    def check_kernel_mask(self, mask: Any, shape: Shape, span: Span) -> Any:
        """A 0/1 pattern: full rank, or rank 1 (first axis) or rank 2 (first and last axes)."""
        import numpy as np

        try:
            arr = np.asarray(mask, dtype=np.float64)
        except (ValueError, TypeError):
            self.el.sink.error("argument-value", "a kernel mask is a nested list of 0 and 1", span)
            return None
        if not np.isin(arr, (0.0, 1.0)).all():
            self.el.sink.error("argument-value", "a kernel mask holds only 0 and 1", span)
            return None
        full = list(shape)
        if arr.ndim == 1 and len(full) >= 1:
            arr = arr.reshape((arr.shape[0],) + (1,) * (len(full) - 1))
        elif arr.ndim == 2 and len(full) >= 2:
            arr = arr.reshape((arr.shape[0],) + (1,) * (len(full) - 2) + (arr.shape[1],))
        try:
            np.broadcast_to(arr, tuple(int(d) for d in full))  # type: ignore[arg-type]
        except ValueError:
            self.el.sink.error("shape-mismatch", f"the kernel mask of shape {list(np.shape(mask))} "
                            f"does not fit the kernel [{', '.join(map(str, full))}]", span,
                            help="give the full shape, or [kernel positions], or "
                            "[kernel positions, output channels]")
            return None
        return np.broadcast_to(arr, tuple(int(d) for d in full)  # type: ignore[arg-type]
                               ).astype(int).tolist()

    def check_reuse(self, layer: LayerValue, inputs: list[Tensor | None], span: Span) -> bool:
        types = [t.type if t is not None else None for t in inputs]
        if any(t is not None and (t.shape is None or has_error_dim(t.shape)) for t in types):
            return False  # already reported
        for spec in layer.op.params:
            if not spec.present(layer.args) or spec.name not in layer.param_shapes:
                continue
            try:
                shape = tuple(spec.shape(layer.args, types))  # type: ignore[arg-type]
            except ShapeError as exc:
                self.el.sink.error(exc.code, exc.message, span)
                return False
            except (IndexError, TypeError):
                self.el.sink.error("shape-mismatch", f"`{layer.op.name}` cannot take an input of "
                                f"rank {types[0].rank if types[0] else None}", span)
                return False
            if shape != layer.param_shapes[spec.name]:
                self.el.sink.error(
                    "shape-mismatch", f"shared layer `{layer.path}` is called with an input "
                    f"that needs `{spec.name}` of shape {shape_str(shape)}, but its first call "
                    f"made it {shape_str(layer.param_shapes[spec.name])}", span,
                    notes=[Note("first called here", self.first_call_span(layer))])
                return False
        return True

    def first_call_span(self, layer: LayerValue) -> Span | None:
        record = self.el.g.layers.get(layer.path or "")
        if record and record.calls:
            return self.el.g.node(record.calls[0]).get("span")
        return layer.span


def arguments_help(op: OpDef) -> str:
    if not op.args:
        return f"`{op.name}` takes no arguments: call it as `{op.name}()`"
    return f"its arguments: {', '.join(a.name for a in op.args)}"


def wrapped_layer_call(op: OpDef, e: ast.Call) -> ast.Call:
    """Keras' spelling of a wrapper, `Bidirectional(GRU(64, return_sequences = true),
    merge_mode = "sum")`, as the registry op takes it: `Bidirectional("GRU", 64,
    return_sequences = true, merge_mode = "sum")`. Any op whose `layer` argument names a
    kind of layer wraps this way; the spans stay those of the source."""
    arg = op.arg("layer")
    if arg is None or not arg.choices:
        return e
    inner: ast.Expr | None = e.args[0] if e.args else None
    keywords = e.keywords
    if inner is None:
        given = next((k for k in e.keywords if k.name == "layer"), None)
        inner = given.value if given is not None else None
        keywords = tuple(k for k in e.keywords if k is not given)
    if not (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
            and inner.func.id in arg.choices):
        return e
    kind = ast.String(inner.func.span, inner.func.id)
    return dataclasses.replace(e, args=(kind, *inner.args, *e.args[1:]),
                               keywords=(*inner.keywords, *keywords))


def unreadable_array_reason(path: str, exc: Exception) -> str:
    """Why a `from_file` array cannot be read, in the language's words (numpy's own
    messages talk about `usecols`, format versions and float64)."""
    if isinstance(exc, OSError):
        return "the file cannot be opened"
    if path.endswith(".npy"):
        return "it is not a .npy array numpy can read without unpickling"
    try:
        with open(path, encoding="utf-8") as handle:
            widths: list[int] = []
            for number, line in enumerate(handle, start=1):
                values = line.split("#", 1)[0].split()
                if not values:
                    continue
                for value in values:
                    try:
                        float(value)
                    except ValueError:
                        return f"line {number}: `{value[:20]}` is not a number"
                if widths and len(values) != widths[-1]:
                    return (f"line {number} has {len(values)} number"
                            f"{'s' * (len(values) != 1)} where the lines before it have "
                            f"{widths[-1]}")
                widths.append(len(values))
    except (OSError, UnicodeDecodeError):
        return "it is not a text file of numbers"
    return "it holds no array of numbers"
