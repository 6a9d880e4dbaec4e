"""Applying a registry op: binding inputs and arguments, checking values, specs
(initialisers, optimizers, ...), running the shape rule and adding the node."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
    choice_help,
    source_text,
    suggestion_help,
)
from graphdsl.elaborate.values import (
    _BAD,
    KERAS_ALIASES,
    POISON,
    Const,
    Poison,
    Scope,
    Tensor,
    TupleValue,
    argument_help,
    argument_spans,
    article,
    convert,
    describe,
    dtype_problem,
    has_error_dim,
    kind_words,
)
from graphdsl.ir.types import (
    FLOAT_DTYPES,
    ShapeError,
)
from graphdsl.ops import REGISTRY
from graphdsl.ops.bounds import misordered, out_of_bounds
from graphdsl.ops.registry import (
    REQUIRED,
    Arg,
    OpCall,
    OpDef,
)
from graphdsl.ops.registry import _Unknown as UnknownShape
from graphdsl.ops.specs import SPEC_CHOICES, SPEC_TABLES, Spec, spec_alias_help
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


class OpRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el

    def call_function(self, op: OpDef, e: ast.Call, scope: Scope) -> Any:
        variadic = next((i for i in op.inputs if i.variadic), None)
        # The tensors of `concat([a, b])` (or `concat(xs = [a, b])`).
        listed: ast.ListExpr | None = None
        if variadic is not None:
            named = next((k.value for k in e.keywords if k.name == variadic.name), None)
            if len(e.args) == 1 and isinstance(e.args[0], ast.ListExpr):
                listed = e.args[0]
            elif not e.args and isinstance(named, ast.ListExpr):
                listed = named
        if listed is not None:
            # Every item of `concat([x, 1])` is one of the tensors, never an argument: a
            # number becomes a constant tensor (and the shape rule then rejects a scalar).
            items = [self.el.expressions.eval(a, scope) for a in listed.items]
            dtype = next((i.type.dtype for i in items if isinstance(i, Tensor)), None)
            args = [self.constant(i, dtype) if isinstance(i, Const) else i for i in items]
        else:
            args = []
            arg_queue = [a for a in op.args]
            for a in e.args:
                # Positional arguments fill tensor inputs, then non-tensor arguments; the
                # kind of each argument decides which (specs are evaluated as specs).
                args.append(self.el.expressions.eval(a, scope))
            del arg_queue
        keywords: dict[str, tuple[Any, Any]] = {}
        for k in e.keywords:
            if k.value is listed:
                continue
            arg = op.arg(k.name)
            if arg is not None and arg.kind in SPEC_TABLES:
                keywords[k.name] = (self.eval_spec(k.value, arg.kind, scope,
                                                    f"`{k.name}` of `{op.name}`"), k)
            else:
                if k.name in keywords:
                    self.el.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                    k.span)
                keywords[k.name] = (self.el.expressions.eval(k.value, scope), k)
        if any(isinstance(a, Poison) for a in args) or any(
                isinstance(v, Poison) for v, _ in keywords.values()):
            return POISON
        if variadic is not None and not any(isinstance(a, Tensor) for a in args) and \
                variadic.name not in keywords:
            example = f"`{op.name}([a, b])`"
            if args and listed is None:
                self.el.sink.error("argument-type", f"`{op.name}` takes the tensors to join, got "
                                f"{describe(args[0])}", e.args[0].span,
                                help=f"pass the tensors in a list: {example}")
            else:
                self.el.sink.error("missing-argument", f"`{op.name}` needs the tensors to join",
                                listed.span if listed is not None else e.span,
                                help=f"pass them in a list: {example}")
            return POISON
        inputs, rest = self.bind_inputs(op, args, keywords, e, call_args=op.args)
        if inputs is None:
            return POISON
        return self.make_op(op, inputs, rest, e.span, arg_spans=argument_spans(op, e))

    def bind_inputs(self, op: OpDef, args: list[Any], keywords: dict[str, tuple[Any, Any]],
                    e: ast.Call, call_args: Sequence[Arg]) -> tuple[Any, dict[str, Any]]:
        """Positional tensors fill tensor inputs in order; other values fill arguments."""
        inputs: dict[str, Any] = {}
        values: dict[str, Any] = {}
        input_slots = [i for i in op.inputs if not i.variadic]
        variadic = next((i for i in op.inputs if i.variadic), None)
        arg_slots = list(call_args)
        ok = True
        for a, expr in zip(args, e.args if len(e.args) == len(args) else [e] * len(args),
                           strict=False):
            if isinstance(a, Tensor) or (isinstance(a, Const) and input_slots and
                                         not arg_slots and not variadic):
                if variadic is not None:
                    inputs.setdefault(variadic.name, []).append(a)
                    continue
                if not input_slots:
                    self.el.sink.error("too-many-arguments", f"`{op.name}` takes "
                                    f"{len(op.inputs)} tensor inputs", expr.span)
                    ok = False
                    continue
                inputs[input_slots.pop(0).name] = a
            elif isinstance(a, Const):
                if variadic is not None and isinstance(a.value, (int, float)) and \
                        not arg_slots:
                    inputs.setdefault(variadic.name, []).append(a)
                    continue
                if not arg_slots:
                    self.el.sink.error("too-many-arguments", f"`{op.name}` takes no more "
                                    "arguments", expr.span)
                    ok = False
                    continue
                slot = arg_slots.pop(0)
                values[slot.name] = (a, expr)
            else:
                self.el.sink.error("argument-type", f"`{op.name}` takes tensors and numbers, got "
                                f"{describe(a)}", expr.span)
                ok = False
        for name, (value, kw) in keywords.items():
            slot_in = op.input_named(name)
            arg = next((x for x in call_args if x.name == name), None)
            if slot_in is not None:
                if name in inputs:
                    self.el.sink.error("duplicate-definition", f"input `{name}` given twice",
                                    kw.span)
                    ok = False
                inputs[name] = value
                if slot_in in input_slots:
                    input_slots.remove(slot_in)
            elif arg is not None:
                if name in values:
                    self.el.sink.error("duplicate-definition", f"argument `{name}` given twice",
                                    kw.span)
                    ok = False
                values[name] = (value, kw.value)
            else:
                candidates = [i.name for i in op.inputs] + [x.name for x in call_args]
                self.el.sink.error("unknown-argument", f"`{op.name}` has no argument `{name}`",
                                kw.span, help=argument_help(name, candidates) or
                                f"it takes: {', '.join(candidates)}")
                ok = False
        if variadic is not None:
            inputs.setdefault(variadic.name, [])
        for slot_in in op.inputs:
            if not slot_in.optional and slot_in.name not in inputs and not slot_in.variadic:
                self.el.sink.error("missing-argument", f"`{op.name}` needs its input "
                                f"`{slot_in.name}`", e.span)
                ok = False
        checked: dict[str, Any] = {}
        for arg in call_args:
            if arg.name in values:
                value, expr = values[arg.name]
                checked[arg.name] = self.check_value(op, arg, value, expr.span)
                if isinstance(checked[arg.name], Poison):
                    ok = False
            elif arg.required:
                self.el.sink.error("missing-argument", f"`{op.name}` needs `{arg.name}`", e.span)
                ok = False
            else:
                checked[arg.name] = arg.default
        if ok and self.report_misordered(op.name, checked, e.span):
            ok = False
        for name, value in list(inputs.items()):
            if isinstance(value, list):
                inputs[name] = [v if isinstance(v, Tensor) else self.constant(v, "float32")
                                for v in value]
            elif isinstance(value, Const):
                other = next((v for v in inputs.values() if isinstance(v, Tensor)), None)
                declared = op.input_named(name)
                dtype = other.type.dtype if other else None
                if declared is not None and declared.dtypes == "float" and (dtype is None or
                                                                   dtype not in FLOAT_DTYPES):
                    dtype = "float32"  # sqrt(16) is 4.0, as in NumPy and PyTorch
                inputs[name] = self.constant(value, dtype)
            elif not isinstance(value, Tensor):
                self.el.sink.error("argument-type", f"input `{name}` of `{op.name}` must be a "
                                f"tensor, got {describe(value)}", e.span)
                ok = False
        if not ok:
            return None, {}
        return inputs, checked

    def report_misordered(self, callee: str, values: dict[str, Any], span: Span) -> bool:
        pair = misordered(values)
        if pair is None:
            return False
        low, high = pair
        self.el.sink.error("argument-value", f"`{low}` of `{callee}` must not exceed `{high}`, "
                           f"got {source_text(values[low])} > {source_text(values[high])}",
                           span, help=f"swap them: `{low}` is the low end of the range")
        return True

    def check_arg(self, op: OpDef, arg: Arg, expr: ast.Expr, scope: Scope) -> Any:
        if arg.kind in SPEC_TABLES:
            return self.eval_spec(expr, arg.kind, scope, f"`{arg.name}` of `{op.name}`")
        return self.check_value(op, arg, self.el.expressions.eval(expr, scope), expr.span)

    def check_value(self, op: OpDef, arg: Arg, value: Any, span: Span) -> Any:
        if isinstance(value, Poison):
            return POISON
        if isinstance(value, Spec):
            return value
        if not isinstance(value, Const):
            self.el.sink.error("argument-type", f"`{arg.name}` of `{op.name}` takes {kind_words(arg)}"
                            f", got {describe(value)}", span)
            return POISON
        v = value.value
        if v is None and arg.optional:
            return None
        converted = convert(arg.kind, v)
        if converted is _BAD:
            fraction = arg.kind in ("int", "ints") and isinstance(v, float) and \
                not v.is_integer() and math.isfinite(v)
            shown = f"{v:.4g}" if fraction else source_text(v)
            self.el.sink.error("argument-type", f"`{arg.name}` of `{op.name}` takes "
                            f"{kind_words(arg)}, got {shown}", span,
                            help="`/` divides exactly; `//` is integer division" if fraction
                            else None)
            return POISON
        if arg.choices is not None and converted not in arg.choices:
            self.el.sink.error("argument-value", f"`{arg.name}` of `{op.name}` must be one of "
                            f"{', '.join(map(source_text, arg.choices))}, got "
                            f"{source_text(converted)}", span,
                            help=choice_help(converted, arg.choices))
            return POISON
        interval = out_of_bounds(arg.name, converted, arg.bounds)
        if interval is not None:
            self.el.sink.error("argument-value", f"`{arg.name}` of `{op.name}` must be "
                               f"{interval}, got {source_text(converted)}", span)
            return POISON
        return converted

    def eval_spec(self, expr: ast.Expr, kind: str, scope: Scope, what: str | None = None) -> Any:
        """`normal(0, 0.1)`, `relu`, `"same"`, `simplex(axis = 0)` -> a checked Spec.
        ``what`` names the argument for messages (`activation` of `Dense`)."""
        table = SPEC_TABLES[kind]
        args: tuple[ast.Expr, ...]
        kws: tuple[ast.Keyword, ...]
        if isinstance(expr, ast.Name) and expr.id in scope.formals:
            v = scope.formals[expr.id]
            name, args, kws, span = v, (), (), expr.span
        elif isinstance(expr, (ast.Name, ast.String)):
            name = expr.id if isinstance(expr, ast.Name) else expr.value
            args, kws, span = (), (), expr.span
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            name, args, kws, span = expr.func.id, expr.args, expr.keywords, expr.func.span
        else:
            evaluated = self.el.expressions.eval(expr, scope)
            if isinstance(evaluated, Poison):
                return POISON  # its error is reported
            got = describe(evaluated)
            self.el.sink.error("argument-type", f"{what or 'this argument'} expects "
                               f"{article(kind)} {kind} such as `{next(iter(table))}`, got {got}",
                               expr.span)
            return POISON
        if isinstance(expr, ast.Name) and name not in table and expr.id in scope.env:
            self.el.sink.error("argument-type", f"{what or 'this argument'} expects "
                               f"{article(kind)} {kind} such as `{next(iter(table))}`, got "
                               f"{describe(scope.env[expr.id])} `{expr.id}`", expr.span,
                               help=f"{kind}s: {', '.join(table)}")
            return POISON
        if not isinstance(name, str) or name not in table:
            where = f" for {what}" if what else ""
            other = REGISTRY.get(str(name))
            got = f"`{name}` is {article(other.kind)} {other.kind}, not {article(kind)} {kind}" \
                if other is not None and other.kind == "layer" else f"unknown {kind} `{name}`"
            self.el.sink.error("unknown-name", f"{got}{where}" if other is None or
                               other.kind != "layer" else f"{what or 'this argument'} expects "
                               f"{article(kind)} {kind}: {got}", span,
                               help=spec_alias_help(str(name), table) or
                               suggestion_help(str(name), table) or
                               f"{kind}s: {', '.join(table)}")
            return POISON
        spec_def = table[name]
        values: dict[str, Any] = {}
        names = list(spec_def.args)
        if len(args) > len(names):
            self.el.sink.error("too-many-arguments", f"`{name}` takes {len(names)} argument{'s' * (len(names) != 1)}",
                            args[len(names)].span)
            return POISON
        for pname, a in zip(names, args, strict=False):
            values[pname] = (a if (kind, pname) == ("optimizer", "loss") else
                             self.el.expressions.eval(a, scope), a.span)
        for k in kws:
            if (kind, k.name) == ("optimizer", "loss"):
                values[k.name] = (k.value, k.value.span)
                continue
            if k.name not in spec_def.args:
                alias = KERAS_ALIASES.get(k.name)
                self.el.sink.error("unknown-argument", f"`{name}` has no argument `{k.name}`",
                                k.span, help=(f"did you mean `{alias}`?" if alias in names
                                              else None) or suggestion_help(k.name, names) or
                                (f"it takes: {', '.join(names)}" if names else
                                 "it takes no arguments"))
                return POISON
            values[k.name] = (self.el.expressions.eval(k.value, scope), k.value.span)
        out: dict[str, Any] = {}
        out_of_range = False
        for pname, default in spec_def.args.items():
            if kind == "optimizer" and pname == "loss" and pname in values:
                loss_terms = self.el.losses.loss_names(values[pname])
                if loss_terms is None:
                    return POISON
                out[pname] = loss_terms
                continue
            if pname in values:
                value, vspan = values[pname]
                if isinstance(value, Poison):
                    return POISON
                if not isinstance(value, Const):
                    self.el.sink.error("argument-type", f"`{pname}` of `{name}` takes a constant, "
                                    f"got {describe(value)}", vspan)
                    return POISON
                if isinstance(default, bool) and not isinstance(value.value, bool):
                    self.el.sink.error("argument-type", f"`{pname}` of `{name}` is a bool", vspan)
                    return POISON
                if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                        not isinstance(value.value, (int, float)) or isinstance(value.value,
                                                                                 bool)):
                    self.el.sink.error("argument-type", f"`{pname}` of `{name}` is a number, got "
                                    f"{source_text(value.value)}", vspan)
                    return POISON
                counts = (isinstance(default, int) and not isinstance(default, bool)) or \
                    pname in INTEGER_SPEC_ARGS
                if counts and isinstance(value.value, float) and not value.value.is_integer():
                    self.el.sink.error("argument-type", f"`{pname}` of `{name}` is a whole "
                                       f"number, got {source_text(value.value)}", vspan)
                    return POISON
                out[pname] = float(value.value) if isinstance(default, float) else value.value
                interval = out_of_bounds(pname, out[pname])
                if interval is not None:
                    self.el.sink.error("argument-value", f"`{pname}` of `{name}` must be "
                                       f"{interval}, got {source_text(value.value)}", vspan)
                    out_of_range = True  # go on: each wrong value is its own mistake
            elif default is REQUIRED:
                self.el.sink.error("missing-argument", f"`{name}` needs `{pname}`", span)
                return POISON
            else:
                out[pname] = default
        if out_of_range or self.report_misordered(name, out, span):
            return POISON
        for (spec_name, pname), choices in SPEC_CHOICES.items():
            if spec_name == name and out.get(pname) not in choices:
                self.el.sink.error("argument-value", f"`{pname}` of `{name}` is one of "
                                   + ", ".join(f'"{c}"' for c in choices) +
                                   f", got {source_text(out.get(pname))}", span)
                return POISON
        if name == "variance_scaling" and not out["scale"] > 0:
            self.el.sink.error("argument-value", f"`scale` of `{name}` must be positive, got "
                               f"{source_text(out['scale'])}", span)
            return POISON
        if kind == "constraint" and out.get("mode") not in ("project", "reparam"):
            self.el.sink.error("argument-value", f"`mode` of `{name}` is \"project\" or "
                            f"\"reparam\", got {source_text(out.get('mode'))}", span)
            return POISON
        if name == "from_file":
            path = os.path.normpath(os.path.join(self.el.base_dir, str(out["path"])))
            if not os.path.isfile(path) and not self.el.missing_files_ok:
                self.el.sink.error("argument-value",
                                f"`from_file`: no file {source_text(out['path'])}", span,
                                help=f"paths are relative to the program: looked at {path}")
                return POISON
            out["path"] = path
        return Spec(kind, name, tuple(out.items()))

    def constant(self, c: Const, dtype: str | None) -> Any:
        import numpy as np

        try:
            arr = np.asarray(c.value)
        except (ValueError, TypeError):
            arr = None
        if arr is None or arr.dtype == object or arr.dtype.kind not in "biuf":
            self.el.sink.error("argument-type", f"{source_text(c.value)} is not a number or a "
                            "regular nested list of numbers", c.span)
            return POISON
        if dtype is None or dtype == "bool" and arr.dtype.kind != "b":
            dtype = {"b": "bool", "i": "int32", "u": "int32", "f": "float32"}[arr.dtype.kind]
        if dtype in ("int8", "int16", "int32", "int64", "uint8") and arr.dtype.kind == "f" \
                and not np.all(arr == np.round(arr)):
            self.el.sink.error("dtype-mismatch", f"{source_text(c.value)} is not an integer, but the "
                            f"other operand is {dtype}", c.span,
                            help="cast the tensor to float32 first")
            return POISON
        value = arr.tolist()
        return self.make_op(REGISTRY["constant"], {},
                            {"value": value, "dtype": dtype, "shape": list(arr.shape)}, c.span)

    def make_op(self, op: OpDef, inputs: dict[str, Any], args: dict[str, Any], span: Span,
                params: dict[str, Tensor] | None = None, layer: str | None = None,
                arg_spans: dict[str, Span] | None = None) -> Any:
        """Create an op node: check input dtypes, run the shape rule, carry masks."""
        arg_spans = arg_spans or {}
        self.el.masks.attach_masks(op, inputs)
        self.align_where(op, inputs, span)
        for slot in op.inputs:
            value = inputs.get(slot.name)
            values = value if isinstance(value, list) else [value] if value is not None else []
            for v in values:
                if v.type.shape is None or has_error_dim(v.type.shape):
                    return self.unknown_result(op)
                problem = dtype_problem(slot.dtypes, v.type)
                if problem:
                    help_text = "ids must be integers: declare the input as int32" \
                        if op.name == "Embedding" else f"convert with cast(..., {problem[1]})"
                    if slot.name == "where" and v.type.is_float and \
                            op.input_named("sample_weight") is not None:
                        help_text = "`where` selects samples with a bool mask; to weight " \
                            "samples, pass the weights as `sample_weight = ...`"
                    self.el.sink.error("dtype-mismatch", f"`{op.name}` requires {problem[0]} "
                                    f"`{slot.name}`, got {v.type}",
                                    arg_spans.get(slot.name, span),
                                    notes=self.origin_notes(v), help=help_text)
                    return POISON
        in_types = {k: ([t.type for t in v] if isinstance(v, list) else v.type)
                    for k, v in inputs.items() if v is not None}
        param_types = {k: v.type for k, v in (params or {}).items()}
        call = OpCall(op, in_types, args, param_types)
        try:
            result = op.infer(call)
        except UnknownShape:
            return self.unknown_result(op)
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
            # A shape rule that met arguments it does not expect: say so, never crash.
            self.el.sink.error("argument-value", f"`{op.name}` cannot be applied to these "
                               "arguments: " + ("a size or stride works out to zero"
                                                if isinstance(exc, ZeroDivisionError) else
                                                "they do not fit its shape rule"), span,
                               help=f"check the arguments against `{op.name}` in docs/ops.md")
            return POISON
        except ShapeError as exc:
            where = span
            if isinstance(exc.argument, str) and exc.argument in arg_spans:
                where = arg_spans[exc.argument]
            culprit = inputs.get(exc.argument) if isinstance(exc.argument, str) else None
            notes = self.origin_notes(culprit) if isinstance(culprit, Tensor) else []
            if isinstance(exc.argument, str) and exc.argument not in inputs:
                notes = []
            else:
                for _k, v in inputs.items():
                    if isinstance(v, Tensor) and v is not culprit and not notes:
                        notes = self.origin_notes(v)
            # `x[:, 12]` is written with brackets: the op's internal name means nothing there.
            plain = exc.message.startswith("`") or op.name == "getitem"
            self.el.sink.error(exc.code, exc.message if plain else f"`{op.name}`: {exc.message}",
                            where, notes=notes, help=exc.help)
            return POISON
        node = self.el.add_node("op:", kind="op", op=op.name, args=dict(args), layer=layer,
                             span=span, types=())
        for name, value in inputs.items():
            if isinstance(value, list):
                for i, v in enumerate(value):
                    self.el.connect(v, node, name, i)
            elif value is not None:
                self.el.connect(value, node, name)
        for name, value in (params or {}).items():
            self.el.connect(value, node, name)
        outs = list(result) if isinstance(result, tuple) else [result]
        outs = self.el.masks.output_masks(op, call, inputs, outs, span)
        self.el.g.node(node)["types"] = tuple(outs)
        if isinstance(inputs.get("pred"), Tensor) and op.arg("from_logits") is not None:
            self.el.losses.check_from_logits(op, inputs["pred"], args.get("from_logits") is True,
                                             arg_spans.get("from_logits", span))
        tensors = [Tensor(node, i, t, span) for i, t in enumerate(outs)]
        return tensors[0] if len(tensors) == 1 else TupleValue(tensors, span)

    def align_where(self, op: OpDef, inputs: dict[str, Any], span: Span) -> None:
        """A padding mask [B, T] given as `where` of x [B, T, d] selects whole steps: it gets
        trailing axes so it lines up from the left, as Keras masks do."""
        where, x = inputs.get("where"), inputs.get("x")
        if op.kind != "function" or not isinstance(where, Tensor) or not isinstance(x, Tensor):
            return
        ws, xs = where.type.shape, x.type.shape
        if ws is None or xs is None or not 0 < len(ws) < len(xs) or tuple(xs[: len(ws)]) != \
                tuple(ws) or tuple(xs[len(xs) - len(ws):]) == tuple(ws):
            return
        aligned: Any = where
        for _ in range(len(xs) - len(ws)):
            aligned = self.make_op(REGISTRY["expand_dims"], {"x": aligned}, {"axis": -1}, span)
            if not isinstance(aligned, Tensor):
                return
        inputs["where"] = aligned

    def unknown_result(self, op: OpDef) -> Any:
        return POISON

    def origin_notes(self, t: Tensor) -> list[Note]:
        data = self.el.g.node(t.node)
        span = data.get("span")
        if span is None:
            return []
        kind = data["kind"]
        what = {"input": f"`{data.get('name')}` is declared as {t.type}",
                "target": f"`{data.get('name')}` is declared as {t.type}",
                "param": f"parameter `{data.get('name')}` is {t.type}"}.get(
            kind, f"this is {t.type}")
        return [Note(what, span)]



# Required spec arguments that count steps (their default gives no type to check against).
INTEGER_SPEC_ARGS = frozenset({"step_size"})
