"""A checked model graph -> a native ``torch.nn.Module``.

Parameters live in submodules whose paths mirror the DSL names, so ``state_dict()`` keys
read like the program (``gpt2_block.3.dense.kernel``). A tied tensor is one Parameter;
its other uses read it (transposed uses are views made at use time). The forward pass
is generated Python source, straight-line over the graph in topological order, so it
costs what a hand-written module costs and ``torch.compile(fullgraph=True)`` traces it
without graph breaks. The source (graphdsl/ir/codegen.py) is kept as ``module.generated_source``.

Each layer of the program is a submodule of its op's class (backends/torch/layers.py), so
``print(module)`` reads like the program and per-layer hooks fire: while a hook is set,
the forward runs a second generated pass that calls the layer submodules (see
``_layers_hooked``). The class is made per graph; pickling rebuilds it from the graph.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrize

from graphdsl.ir.codegen import Codegen, attr_chain, const_name
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops import REGISTRY
from graphdsl.ops.specs import Spec
from graphdsl.runtime.weights import initial_values

from .constraints import Reparametrization, project_
from .layers import make_layer
from .ops import load_all
from .ops.elementwise import torch_dtype


class LossResult(NamedTuple):
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # weighted: they add up to total
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]]  # (sum over valid samples, count)
    outputs: dict[str, torch.Tensor]


class Container(nn.Module):
    """A node of the module tree above the layers: a block instance, a `repeat`, a model
    used as a layer, or the path of `param` statements."""


class GraphModule(nn.Module):
    """Base of every generated module. ``forward(**inputs)`` returns the named outputs."""

    generated_source: str = ""
    input_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def __init__(self, model: ModelGraph, values: Mapping[str, np.ndarray] | None = None,
                 seed: int = 0, program_models: Mapping[str, ModelGraph] | None = None):
        super().__init__()
        self.ir = model
        self.program_models = program_models
        arrays = dict(values) if values is not None else initial_values(model, seed)
        self._constrained: list[tuple[nn.Module, str, Spec]] = []
        self._canonical: dict[str, tuple[nn.Module, str]] = {}
        self._layer_list: list[nn.Module] = []  # a plain list: the tree registers them
        for path, record in model.layers.items():
            *parents, leaf = path.split(".")
            owner = self._container(parents)
            if hasattr(owner, leaf) and leaf not in owner._modules:
                raise ValueError(f"the name `{leaf}` clashes with an attribute of "
                                 "torch.nn.Module; rename that layer")
            layer = make_layer(model, record)
            owner.add_module(leaf, layer)
            self._layer_list.append(layer)
        for node in model.params:
            self._add_tensor(model.node(node), arrays)
        for node in model.ops():
            data = model.node(node)
            if data["op"] == "constant":
                value = torch.tensor(data["args"]["value"],
                                     dtype=torch_dtype(data["args"]["dtype"]))
                self.register_buffer(const_name(node), value, persistent=False)
            elif not REGISTRY[data["op"]].inputs:
                # a static value (arange): as a buffer it moves with the module's device
                self.register_buffer(const_name(node), load_all()[data["op"]](**data["args"]),
                                     persistent=False)

    # ---- building
    def _container(self, path: list[str]) -> nn.Module:
        module: nn.Module = self
        for segment in path:
            child = module._modules.get(segment)
            if child is None:
                if hasattr(module, segment):
                    raise ValueError(f"the name `{segment}` clashes with an attribute of "
                                     "torch.nn.Module; rename that layer")
                child = Container()
                module.add_module(segment, child)
            module = child
        return module

    def _add_tensor(self, data: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        name = data["name"]
        *path, leaf = name.split(".")
        owner = self._container(path)
        if name not in arrays:
            raise KeyError(f"no value for `{name}`")
        tensor = torch.from_numpy(np.array(arrays[name], copy=True))
        if data["role"] == "state":
            owner.register_buffer(leaf, tensor)
        else:
            owner.register_parameter(leaf, nn.Parameter(tensor,
                                                        requires_grad=data["trainable"]))
        if data["kernel_mask"] is not None:
            owner.register_buffer(f"{leaf}_mask", torch.tensor(data["kernel_mask"],
                                                               dtype=tensor.dtype))
            self._canonical[f"{name}_mask"] = (owner, f"{leaf}_mask")
        constraint = data["constraint"]
        if constraint is not None:
            if constraint.get("mode") == "reparam":
                parametrize.register_parametrization(owner, leaf,
                                                     Reparametrization(constraint),
                                                     unsafe=True)
            else:
                self._constrained.append((owner, leaf, constraint))
        self._canonical[name] = (owner, leaf)

    # ---- the canonical view, for checkpoints
    def canonical_tensors(self) -> dict[str, torch.Tensor]:
        """Canonical name -> the stored tensor (unconstrained for re-parameterisations)."""
        out = {}
        for name, (owner, leaf) in self._canonical.items():
            if parametrize.is_parametrized(owner, leaf):
                out[name] = owner.parametrizations[leaf].original  # type: ignore[index]
            elif leaf in owner._parameters:
                out[name] = owner._parameters[leaf]  # type: ignore[assignment]
            else:
                out[name] = owner._buffers[leaf]  # type: ignore[assignment]
        return out

    def export_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().to("cpu").float().numpy() if v.dtype == torch.bfloat16 else
                v.detach().to("cpu").numpy() for k, v in self.canonical_tensors().items()}

    @torch.no_grad()
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        targets = self.canonical_tensors()
        for name, value in arrays.items():
            target = targets[name]
            target.copy_(torch.from_numpy(np.asarray(value)).to(target.dtype))

    def submodel(self, path: str) -> GraphModule:
        """A model used as a layer at ``path``, as a module of its own that shares this
        module's parameters (training either trains both)."""
        if path not in self.ir.submodels or self.program_models is None:
            raise KeyError(f"`{path}` is not a model used as a layer in `{self.ir.name}`; "
                           f"those are: {', '.join(self.ir.submodels) or 'none'}")
        child = build_module(self.program_models[self.ir.submodels[path]],
                             program_models=self.program_models)
        mine = self.canonical_tensors()
        for name, (owner, leaf) in child._canonical.items():
            shared = mine[f"{path}.{name}"]
            if isinstance(shared, nn.Parameter):
                owner.register_parameter(leaf, shared)
            else:
                owner.register_buffer(leaf, shared)
        return child

    @torch.no_grad()
    def project_constraints(self) -> None:
        """Apply every `mode = "project"` constraint; call after each optimizer step."""
        for owner, leaf, spec in self._constrained:
            project_(getattr(owner, leaf), spec)

    def _layers_hooked(self) -> bool:
        """Whether any layer submodule has a hook (or a global module hook is set).

        Two generated passes compute the same thing: one calls each op's implementation
        directly (what a hand-written module costs), the other calls the layer submodules,
        so that their hooks fire. Calling through ``nn.Module.__call__`` costs a few
        microseconds a layer, which is paid only while someone is listening."""
        for layer in self._layer_list:
            if layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks \
                    or layer._backward_pre_hooks:
                return True
        return bool(_global_hooks())

    # ---- pickle, copy.deepcopy, torch.save: the class is made from the graph, so rebuild
    # it from the graph and restore the instance's state into it.
    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_restore, (self.ir,), self.__dict__.copy())

    # ---- running
    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if args:
            inputs = {**dict(zip(self.input_names, args, strict=False)), **inputs}
        if self._layers_hooked():
            return self._run_forward_layers(inputs)  # type: ignore[attr-defined, no-any-return]
        return self._run_forward(inputs)  # type: ignore[attr-defined, no-any-return]

    def compute_losses(self, inputs: Mapping[str, torch.Tensor],
                       targets: Mapping[str, torch.Tensor]) -> LossResult:
        """The total loss, each weighted term, each metric, and the outputs, in one pass."""
        run = self._run_losses_layers if self._layers_hooked() else self._run_losses  # type: ignore[attr-defined]
        outputs, terms, metrics = run(inputs, targets)
        total = sum(terms.values()) if terms else torch.zeros(())
        return LossResult(total, terms, metrics, outputs)  # type: ignore[arg-type]


def _global_hooks() -> bool:
    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or torch_module._global_backward_hooks
                or torch_module._global_backward_pre_hooks)


def _param_access(data: dict[str, Any]) -> str:
    access = attr_chain("self", data["name"])
    if data["kernel_mask"] is not None:
        access = f"{access} * {attr_chain('self', data['name'] + '_mask')}"
    return access


def _restore(model: ModelGraph) -> GraphModule:
    """An empty instance of the model's class; pickle then sets its state."""
    cls = module_class(model)
    return cls.__new__(cls)


def module_class(model: ModelGraph, checkpoint_activations: bool = False
                 ) -> type[GraphModule]:
    """A GraphModule subclass with this model's generated forward and loss methods. With
    ``checkpoint_activations`` the loss pass runs each copy of a repeated block through
    torch.utils.checkpoint (recomputed in the backward pass, not kept)."""
    codegen = Codegen(model, load_all(), _param_access,
                      checkpoint="_checkpoint" if checkpoint_activations else None)
    codegen.globals["_checkpoint"] = functools.partial(torch.utils.checkpoint.checkpoint,
                                                       use_reentrant=False)
    generated = codegen.generate()
    functions = generated.functions()
    # the same passes through the layer submodules, for when hooks listen (_layers_hooked)
    through_layers = Codegen(model, load_all(), _param_access,
                             layer_call=lambda path: attr_chain("self", path)).generate()
    functions.update({f"{name}_layers": fn for name, fn in through_layers.functions().items()})
    class_name = "".join(ch for ch in model.name if ch.isalnum()) + "Module"
    attrs = {
        **functions,
        "generated_source": generated.source,
        "input_names": tuple(model.node(n)["name"] for n in model.inputs),
        "target_names": tuple(model.node(n)["name"] for n in model.targets),
        "output_names": tuple(model.node(n)["name"] for n in model.outputs),
        "__module__": __name__,
    }
    return type(class_name, (GraphModule,), attrs)


def build_module(model: ModelGraph, values: Mapping[str, np.ndarray] | None = None,
                 seed: int = 0, program_models: Mapping[str, ModelGraph] | None = None,
                 checkpoint_activations: bool = False) -> GraphModule:
    return module_class(model, checkpoint_activations)(model, values, seed, program_models)
