"""Calls: of ops, layers, blocks and models used as layers, and `repeat`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
    source_text,
    suggestion_help,
)
from graphdsl.elaborate.budget import BudgetExceeded
from graphdsl.elaborate.values import (
    LAYER_LIKE,
    MAX_REPEAT,
    POISON,
    Const,
    Definition,
    Instance,
    LayerClass,
    LayerValue,
    OpFunction,
    Poison,
    RepeatValue,
    Scope,
    Tensor,
    TupleValue,
    describe,
    layer_base_name,
    within,
)
from graphdsl.ops.registry import (
    snake_case,
)
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


# Python frames per nesting level stay within the compiler's recursion limit.
MAX_BLOCK_NESTING = 600


class CallRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el

    def eval_Repeat(self, e: ast.Repeat, scope: Scope) -> Any:
        count = self.el.expressions.eval(e.count, scope)
        if isinstance(count, Poison):
            return POISON
        if not isinstance(count, Const) or not isinstance(count.value, int) or \
                isinstance(count.value, bool) or not 0 <= count.value <= MAX_REPEAT:
            self.el.sink.error("argument-value", f"`repeat` needs a count from 0 to {MAX_REPEAT}, "
                            f"got {describe(count)}", e.count.span)
            return POISON
        body = e.body
        apply_args: ast.Call | None = None
        # `repeat N Block(args)(x)`: the last call applies the repeated layer to x.
        if isinstance(body, ast.Call) and isinstance(body.func, ast.Call):
            apply_args, body = body, body.func
        index = e.index
        if index is not None and (index.name in scope.env or index.name in scope.formals):
            self.el.sink.error("duplicate-definition", f"`{index.name}` is already defined: "
                               "the copy number needs a name of its own", index.span)
            return POISON

        def make(i: int) -> Any:
            """Copy `i`: the body evaluated afresh, reading `i` by the index's name."""
            if index is None:
                return self.el.expressions.eval(body, scope)
            # Copies after the first may be made later, at the first call of a named
            # repetition, when the name may have been bound meanwhile: restore it.
            before = scope.env.get(index.name)
            scope.env[index.name] = Const(i, index.span)
            try:
                return self.el.expressions.eval(body, scope)
            finally:
                if before is None:
                    del scope.env[index.name]
                else:
                    scope.env[index.name] = before

        # The body is checked once even when it makes no copy (`repeat 0` is the identity).
        first = make(0)
        if isinstance(first, Poison):
            return POISON
        if not isinstance(first, (LayerValue, Instance)):
            self.el.sink.error("argument-type", f"`repeat` needs a layer or block, got "
                            f"{describe(first)}", body.span)
            return POISON
        pending = {0: first}

        def make_copy(i: int) -> Any:
            return pending.pop(i) if i in pending else make(i)

        rep = RepeatValue(count.value, e.shared, make_copy, e.span)
        if apply_args is None:
            return rep
        return self.call(rep, apply_args, scope)

    def eval_Call(self, e: ast.Call, scope: Scope) -> Any:
        if isinstance(e.func, ast.Name) and e.func.id == "mask_of" and \
                e.func.id not in scope.env:
            return self.el.masks.mask_of(e, scope)
        if isinstance(e.func, ast.Name) and self.el.control.is_compile_time(e, scope):
            return self.el.control.call(e, scope)
        if self.el.stateless.is_stateless_call(e, scope):
            return self.el.stateless.call(e, scope)
        if self.el.stateless.is_time_distributed(e, scope):
            return self.el.stateless.time_distributed(e, scope)
        func = self.el.expressions.eval(e.func, scope)
        if isinstance(func, Poison):
            # the arguments are still checked, a list's items one by one: stacked, tensors
            # of other shapes would be a second error for the one mistake
            for a in e.args:
                for item in a.items if isinstance(a, ast.ListExpr) else (a,):
                    self.el.expressions.eval(item, scope)
            return POISON
        return self.call(func, e, scope)

    def call(self, func: Any, e: ast.Call, scope: Scope) -> Any:
        if isinstance(func, LayerClass):
            return self.el.layers.construct_layer(func.op, e, scope)
        if isinstance(func, OpFunction):
            return self.el.opcalls.call_function(func.op, e, scope)
        if isinstance(func, Definition):
            positional = [self.el.expressions.eval(a, scope) for a in e.args] if e.args else []
            takes_name = any(f.name.name == "name" for f in func.node.formals) or any(
                isinstance(s, ast.InputStmt) and s.name.name == "name" for s in func.node.body)
            if any(isinstance(p, Poison) for p in positional):
                return POISON  # the argument's error is reported: not also a missing one
            if any(isinstance(p, Tensor) for p in positional):
                # `Block(x, name = "b")`: a block without formals, called on tensors at once
                inst = self.instantiate(func, [], {}, e.span, scope)
                evaluated = self.eval_keywords(e, scope)
                named = next((k for k in e.keywords if k.name == "name"), None)
                if named is not None and not takes_name:
                    evaluated.pop("name")
                    self.name_instance(inst, named, scope)
                return self.apply_values(inst, positional, evaluated, e, scope)
            keywords = {k.name: k for k in e.keywords}
            name = keywords.pop("name", None) if not takes_name else None
            inst = self.instantiate(func, e.args, keywords, e.span, scope)
            if name is not None and isinstance(inst, Instance):
                self.name_instance(inst, name, scope)
            return inst
        if isinstance(func, LAYER_LIKE):
            args = [self.el.expressions.eval(a, scope) for a in e.args]
            return self.apply_values(func, args, self.eval_keywords(e, scope), e, scope)
        if isinstance(e.func, ast.Name) and e.func.id in scope.rebound_layers:
            return POISON  # reported where the layer's name was rebound
        what = f"`{e.func.id}` is {describe(func)}" if isinstance(e.func, ast.Name) else \
            f"this is {describe(func)}"
        self.el.sink.error("not-callable", f"{what}, not a layer, block, model or function",
                        e.func.span)
        return POISON

    def eval_keywords(self, e: ast.Call, scope: Scope) -> dict[str, tuple[Any, ast.Keyword]]:
        out: dict[str, tuple[Any, ast.Keyword]] = {}
        for k in e.keywords:
            if k.name in out:
                self.el.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                k.span)
            out[k.name] = (self.el.expressions.eval(k.value, scope), k)
        return out

    def name_instance(self, inst: Instance, kw: ast.Keyword, scope: Scope) -> None:
        """`Block(..., name = "b")`: the instance's path, as `name =` sets a layer's."""
        value = self.el.expressions.eval(kw.value, scope)
        if isinstance(value, Poison):
            return
        if not isinstance(value, Const) or not isinstance(value.value, str):
            self.el.sink.error("argument-type", f"`name` is a string that is a plain name, got "
                               f"{describe(value)}", kw.value.span)
            return
        if not value.value.isidentifier():
            self.el.sink.error("argument-value", "`name` must be a plain name (letters, digits "
                               f"and `_`), got {source_text(value.value)}", kw.value.span)
            return
        inst.path = scope.claim(value.value)

    def settle(self, value: Any, scope: Scope) -> Any:
        """The layer or instance that `value`'s path names in the instance being expanded.

        A block body runs once per call of its instance (and once per copy of a shared
        `repeat`), making fresh values each time; a path made by an earlier run names the
        layer made then, so its weights are reused rather than made again. Two values on
        one path within one run are a duplicate name. None after an error.
        """
        if value.path is None or value.calls or scope.cache is None or \
                not value.path.startswith(scope.prefix):
            return value
        key = value.path[len(scope.prefix):]
        cached = scope.cache.get(key)
        if cached is None or cached is value:
            scope.cache[key] = value
            scope.settled.add(key)
            return value
        if key in scope.settled:
            self.el.sink.error("duplicate-definition", f"two layers are named `{value.path}`",
                               value.span, notes=[Note("the other layer is made here",
                                                       cached.span)],
                               help="a name given with `name =` names one layer")
            return None
        scope.settled.add(key)
        same_kind = (isinstance(value, LayerValue) and isinstance(cached, LayerValue) and
                     cached.op is value.op) or \
            (isinstance(value, Instance) and isinstance(cached, Instance) and
             cached.definition is value.definition)
        if same_kind:
            return cached
        scope.cache[key] = value
        return value

    def instantiate(self, d: Definition, args: Sequence[ast.Expr],
                    keywords: dict[str, ast.Keyword], span: Span, scope: Scope) -> Any:
        formals = self.el.bind_formals(d.node, args, keywords, span, scope)
        return Instance(d, formals, span)

    def apply_values(self, func: Any, args: list[Any], keywords: dict[str, tuple[Any, Any]],
                     e: ast.Call, scope: Scope) -> Any:
        if any(isinstance(a, Poison) for a in args) or any(
                isinstance(v, Poison) for v, _ in keywords.values()):
            return POISON
        if isinstance(func, LayerValue):
            return self.el.layers.call_layer(func, args, keywords, e, scope)
        if isinstance(func, Instance):
            return self.call_instance(func, args, keywords, e, scope)
        assert isinstance(func, RepeatValue)
        return self.call_repeat(func, args, keywords, e, scope)

    def call_repeat(self, rep: RepeatValue, args: list[Any],
                    keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        """Thread the first argument through the copies; every copy also gets the other
        arguments unchanged (a mask, an encoder's output)."""
        return_states = False
        if "return_states" in keywords:
            value, kw = keywords.pop("return_states")
            if not isinstance(value, Const) or not isinstance(value.value, bool):
                self.el.sink.error("argument-type", "`return_states` is a bool", kw.value.span)
            else:
                return_states = value.value
        if not args or not isinstance(args[0], Tensor):
            self.el.sink.error("argument-type", "a repeated layer threads a tensor through its "
                               "copies: its first argument must be a tensor",
                               e.args[0].span if e.args else e.span,
                               help=None if args else "call it on a tensor, e.g. `stack(x)`")
            return POISON
        if not self.make_members(rep, scope):
            return POISON
        x: Any = args[0]
        rest = args[1:]
        states = [x]
        for member in rep.members:
            before = x
            x = self.apply_values(member, [x, *rest], dict(keywords), e, scope)
            if isinstance(x, TupleValue):
                self.el.sink.error("argument-type", "a repeated block must have one output",
                                e.span)
                return POISON
            if isinstance(x, Poison):
                return POISON
            # Separate copies are each built on their own input; one shared copy is applied
            # to its own output, so it must keep the shape.
            if rep.shared and x.type.shape is not None and before.type.shape is not None and \
                    (x.type.shape != before.type.shape or x.type.dtype != before.type.dtype):
                self.el.sink.error("shape-mismatch", f"`repeat shared` applies one copy to its "
                                f"own output, but it maps {before.type} to {x.type}", e.span,
                                help="a shared repeated layer must keep its input's shape; "
                                "without `shared` each copy gets weights for its own input")
                return POISON
            states.append(x)
        if return_states:
            return TupleValue([x, TupleValue(states, e.span)], e.span)
        return x

    def make_members(self, rep: RepeatValue, scope: Scope) -> bool:
        if rep.members or rep.count == 0:
            return True
        first = rep.make(0)
        if isinstance(first, Poison):
            return False
        if rep.path is None:
            # A copy named with `name =` names the repetition: its copies are `NAME.0`, ...
            rep.path = first.path or scope.auto_path(layer_base_name(first))
        if rep.shared:
            first.path = first.path or rep.path
            rep.members = [first] * rep.count
            return True
        for i in range(rep.count):
            member = first if i == 0 else rep.make(i)
            if isinstance(member, Poison):
                return False
            member.path = f"{rep.path}.{i}"
            rep.members.append(member)
        return True

    def call_instance(self, inst: Instance, args: list[Any],
                      keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        node = inst.definition.node
        if node.name.name in self.el.expanding:
            chain = " -> ".join([*self.el.expanding[self.el.expanding.index(node.name.name):],
                                 node.name.name])
            self.el.sink.error("cycle", f"{node.kind} `{node.name.name}` uses itself: {chain}",
                            e.span, notes=[Note(f"`{node.name.name}` is defined here",
                                                node.name.span)],
                            help="a block cannot contain itself; use `repeat N` to stack it")
            return POISON
        if inst.path is None:
            inst.path = scope.auto_path(snake_case(node.name.name))
        settled = self.settle(inst, scope)
        if settled is None:
            return POISON
        inst = settled
        assert inst.path is not None
        if not inst.calls:
            first = self.el.instance_paths.get(inst.path)
            if first is not None:
                self.el.sink.error("duplicate-definition", f"two layers are named "
                                   f"`{inst.path}`", e.span,
                                   notes=[Note("the other one is called here", first)],
                                   help="a name given with `name =` names one layer")
                return POISON
            self.el.instance_paths[inst.path] = e.span
        if node.kind == "model":
            self.el.g.submodels.setdefault(inst.path, node.name.name)
        inputs = [s for s in node.body if isinstance(s, ast.InputStmt)]
        names = [s.name.name for s in inputs]
        bound: dict[str, tuple[Tensor, Span]] = {}
        arg_spans = [a.span for a in e.args]
        if len(args) > len(inputs):
            self.el.sink.error("too-many-arguments", f"`{node.name.name}` takes {len(inputs)} "
                            f"input{'s' * (len(inputs) != 1)}, got {len(args)}",
                            e.args[len(inputs)].span if len(e.args) > len(inputs) else e.span)
            return POISON
        for i, (stmt, value) in enumerate(zip(inputs, args, strict=False)):
            bound[stmt.name.name] = (value, arg_spans[i] if i < len(arg_spans) else e.span)
        for name, (value, kw) in keywords.items():
            if name not in names:
                self.el.sink.error("unknown-argument", f"`{node.name.name}` has no input `{name}`",
                                kw.span, help=suggestion_help(name, names))
                return POISON
            bound[name] = (value, kw.value.span)
        for name in names:
            value = bound[name][0] if name in bound else None
            if value is None:
                self.el.sink.error("missing-argument", f"`{node.name.name}` needs its input "
                                f"`{name}`", e.span)
                return POISON
            if not isinstance(value, Tensor):
                self.el.sink.error("argument-type", f"input `{name}` of `{node.name.name}` must be "
                                f"a tensor, got {describe(value)}", e.span)
                return POISON
        inst.calls += 1
        inner = Scope(inst.definition.namespace, inst.path + ".", inst.formals, inst.cache,
                      scope.model_name)
        inner.definition_kind, inner.definition_name = node.kind, node.name.name
        inner.caller = scope
        for stmt in inputs:
            inner.taken.setdefault(stmt.name.name, stmt.name.span)
        if scope.caller is None:
            for value, where in bound.values():
                if self.el.g.node(value.node)["kind"] == "target":
                    self.el.g.target_calls.setdefault(value.node, where)
        if len(self.el.expanding) >= MAX_BLOCK_NESTING:
            self.el.sink.error("resource-limit", f"blocks nest more than {MAX_BLOCK_NESTING} "
                               "deep", e.span, help="flatten the chain, or use `repeat`")
            return POISON
        # A definition expanded before with the same arguments costs as much again: stop
        # before the expansion that would pass the budget, not after it.
        cost_key = (id(node), repr(sorted(inst.formals.items())))
        nodes_before = len(self.el.g.graph)
        if nodes_before + self.el.expansion_costs.get(cost_key, 0) > self.el.max_nodes:
            raise BudgetExceeded(e.span)
        self.el.expanding.append(node.name.name)
        # Expression depth counts within one body: a chain of block calls is not an
        # expression nested that deep.
        depth, self.el.depth = self.el.depth, 0
        reported = len(self.el.sink.items)
        outputs = self.el.statements.run_body(node, inner, top_level=False, bound_inputs=bound)
        self.el.expanding.pop()
        self.el.depth = depth
        self.el.expansion_costs.setdefault(cost_key, len(self.el.g.graph) - nodes_before)
        self.note_call_site(reported, node, e.span)
        values = [v for _, v in outputs]
        if any(isinstance(v, Poison) for v in values):
            return POISON
        if len(values) == 1:
            return values[0]
        return TupleValue(values, e.span) if values else POISON

    def note_call_site(self, first: int, node: ast.Definition, call: Span) -> None:
        """What the body of a block reports depends on its arguments: each diagnostic found
        while expanding it (from index ``first`` on) gets a note at the call, as rustc
        notes a macro invocation. Nested calls give one note per level."""
        import dataclasses

        note = Note(f"in this call of `{node.name.name}`", call)
        items = self.el.sink.items
        for i in range(first, len(items)):
            span = items[i].span
            # A misplaced statement is wrong whatever the arguments.
            if span is not None and not within(span, call) and \
                    items[i].code != "invalid-statement":
                items[i] = dataclasses.replace(items[i], notes=(*items[i].notes, note))
