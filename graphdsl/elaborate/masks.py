"""Masks: attaching padding masks to the ops that use them and computing each op's output
mask from the registry's mask rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
)
from graphdsl.elaborate.values import (
    POISON,
    Const,
    Poison,
    Scope,
    Tensor,
    describe,
)
from graphdsl.ir.types import (
    ShapeError,
    TensorType,
)
from graphdsl.ops import REGISTRY
from graphdsl.ops.registry import (
    OpCall,
    OpDef,
)
from graphdsl.ops.registry import _Unknown as UnknownShape
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


class MaskRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el

    def mask_of(self, e: ast.Call, scope: Scope) -> Any:
        if len(e.args) != 1 or e.keywords:
            self.el.sink.error("argument-type", "`mask_of` takes one tensor", e.span)
            return POISON
        v = self.el.expressions.eval(e.args[0], scope)
        if isinstance(v, Poison):
            return POISON
        if not isinstance(v, Tensor):
            self.el.sink.error("argument-type", f"`mask_of` takes a tensor, got {describe(v)}",
                            e.args[0].span)
            return POISON
        if v.type.mask is None:
            self.el.sink.error("argument-value", "this tensor carries no mask", e.args[0].span,
                            help="masks come from `Embedding(..., mask_zero = true)`")
            return POISON
        mask_type = self.el.g.node(v.type.mask)["types"][0]
        return Tensor(v.type.mask, 0, mask_type, e.span)

    def attach_masks(self, op: OpDef, inputs: dict[str, Any]) -> None:
        """Consuming ops receive the padding masks of their inputs on their mask ports."""
        if op.mask not in ("consume", "consume-keep"):
            return
        data_inputs = [i for i in op.inputs if not i.name.endswith("mask") and
                       i.name not in ("where", "sample_weight", "attention_mask")]
        first = inputs.get(data_inputs[0].name) if data_inputs else None
        if inputs.get("mask") is None and isinstance(first, Tensor) and first.type.mask:
            inputs["mask"] = self.mask_tensor(first.type.mask)
        for slot in op.inputs:
            if slot.name.endswith("_mask") and slot.name != "attention_mask" and \
                    inputs.get(slot.name) is None:
                source = inputs.get(slot.name[: -len("_mask")])
                if isinstance(source, Tensor) and source.type.mask:
                    inputs[slot.name] = self.mask_tensor(source.type.mask)
                elif slot.name == "value_mask" and isinstance(source, Tensor) and \
                        isinstance(first, Tensor) and source.node == first.node and \
                        source.index == first.index and isinstance(inputs.get("mask"), Tensor):
                    inputs[slot.name] = inputs["mask"]

    def mask_tensor(self, mask_node: str) -> Tensor:
        data = self.el.g.node(mask_node)
        return Tensor(mask_node, 0, data["types"][0], data["span"])

    def output_masks(self, op: OpDef, call: OpCall, inputs: dict[str, Any],
                     outs: list[TensorType], span: Span) -> list[TensorType]:
        if op.mask == "produce":
            if not call.args.get("mask_zero"):
                return outs
            ids = inputs["ids"]
            zero = self.el.opcalls.constant(Const(0, span), ids.type.dtype)
            mask = self.el.opcalls.make_op(REGISTRY["not_equal"], {"x": ids, "y": zero}, {}, span)
            if not isinstance(mask, Tensor):
                return outs
            return [outs[0].with_mask(mask.node), *outs[1:]]
        data = [v for k, v in inputs.items() if isinstance(v, Tensor) and
                not k.endswith("mask") and k not in ("where", "sample_weight")]
        for v in inputs.values():
            if isinstance(v, list):
                data.extend(x for x in v if isinstance(x, Tensor))
        masks: list[str] = []
        for v in data:
            if v.type.mask and v.type.mask not in masks:
                masks.append(v.type.mask)
        if not masks:
            return outs
        keep = op.mask in ("elementwise", "consume-keep")
        if op.mask_keep is not None and op.mask not in ("consume",):
            try:
                keep = bool(op.mask_keep(call))
            except (ShapeError, KeyError, TypeError, IndexError, UnknownShape):
                keep = False
        if not keep:
            if op.mask == "drop" and inputs.get("where") is None:
                origin = self.el.g.node(masks[0]).get("span")
                self.el.sink.warning(
                    "mask-ignored", f"`{op.name}` ignores the padding mask of its input",
                    span, notes=[Note("the mask comes from here", origin)] if origin else [],
                    help=self.mask_help(op))
            return outs
        mask_node = masks[0]
        mask_type = self.el.g.node(mask_node)["types"][0]
        for other in masks[1:]:
            other_type = self.el.g.node(other)["types"][0]
            if other_type.shape != mask_type.shape:
                continue
            merged = self.el.opcalls.make_op(REGISTRY["logical_and"],
                                  {"x": self.mask_tensor(mask_node),
                                   "y": self.mask_tensor(other)}, {}, span)
            if isinstance(merged, Tensor):
                mask_node = merged.node
        result = []
        for t in outs:
            fits = t.shape is not None and mask_type.shape is not None and \
                len(t.shape) > len(mask_type.shape) - 1 and \
                tuple(t.shape[: len(mask_type.shape)]) == tuple(mask_type.shape)
            result.append(t.with_mask(mask_node) if fits else t)
        return result

    @staticmethod
    def mask_help(op: OpDef) -> str:
        if op.family == "reduce":
            return f"pass the mask: `{op.name}(x, axis = 1, where = mask_of(x))`"
        return "use an op that takes the mask (e.g. GlobalAveragePooling1D), or select " \
               "positions explicitly"
