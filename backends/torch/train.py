"""The PyTorch engine of `graphdsl train` / `graphdsl eval` (the driver: graphdsl/runtime/training.py).

One step: forward and loss in one generated pass, backward (per optimizer group when
groups minimise their own losses), gradient clipping, optimizer steps, constraint
projections. Optimizer moments and the random-number state travel as numpy arrays, so
checkpoints never hold pickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from graphdsl.compiler import Program
from graphdsl.elaborate.train_block import loss_terms_named
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.patterns import matches
from graphdsl.ops.specs import Spec
from graphdsl.runtime import training
from graphdsl.runtime.training import NonFiniteLoss, Settings, StepResult, train_error

from .module import GraphModule, LossResult, build_module


def pick_device(requested: str | None) -> torch.device:
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise train_error("train-setting", "--device cuda: no CUDA device is available here",
                          help="use --device cpu or auto")
    return torch.device(str(requested))


def make_optimizer(spec: Spec, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    a = dict(spec.args)
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=a["lr"], momentum=a["momentum"],
                               nesterov=a["nesterov"], weight_decay=a["weight_decay"])
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=a["lr"], betas=(a["beta_1"], a["beta_2"]),
                                eps=a["epsilon"], weight_decay=a["weight_decay"])
    return torch.optim.AdamW(params, lr=a["lr"], betas=(a["beta_1"], a["beta_2"]),
                             eps=a["epsilon"], weight_decay=a["weight_decay"])


class TorchEngine:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings):
        self.model = model
        self.settings = settings
        self.device = pick_device(settings["device"])
        self.precision = settings["precision"]
        torch.manual_seed(int(settings["seed"]))
        self.module: GraphModule = build_module(model, seed=int(settings["seed"]),
                                                program_models=program.models)
        self.module.to(self.device)
        # torch.compile compiles `forward`; training runs the loss pass, so compile that.
        self.compute_losses: Any = torch.compile(self.module.compute_losses, fullgraph=True) \
            if settings.compile else self.module.compute_losses
        tensors = self.module.canonical_tensors()
        trainable = [model.node(p)["name"] for p in model.trainable_params()]
        taken: set[str] = set()
        self.groups: list[tuple[Spec, torch.optim.Optimizer, list[str]]] = []
        for pattern, spec in settings.optimizers:
            names = [n for n in trainable if n not in taken and matches(pattern, n)]
            taken.update(names)
            if names:
                self.groups.append((spec, make_optimizer(spec, [tensors[n] for n in names]),
                                    names))
        missing = [n for n in trainable if n not in taken]
        if missing:
            raise train_error("optimizer-coverage", f"{len(missing)} trainable parameters "
                              "belong to no optimizer group", [f"`{n}`" for n in missing[:10]])
        self.per_group_losses = any(spec.get("loss") for spec, _, _ in self.groups)
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16" and
                                           self.device.type == "cuda")

    # -- batches
    def _tensors(self, batch: Mapping[str, np.ndarray],
                 names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device)
                for k in names}

    def _losses(self, batch: Mapping[str, np.ndarray]) -> LossResult:
        inputs = self._tensors(batch, self.module.input_names)
        targets = self._tensors(batch, self.module.target_names)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self.compute_losses(inputs, targets)  # type: ignore[no-any-return]

    @staticmethod
    def _result(result: LossResult) -> StepResult:
        return StepResult(float(result.total.detach()),
                          {k: float(v.detach()) for k, v in result.terms.items()},
                          {k: (float(s), float(c)) for k, (s, c) in result.metrics.items()})

    # -- steps
    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        self.module.train()
        for spec, opt, _ in self.groups:
            for group in opt.param_groups:
                group["lr"] = float(spec["lr"]) * lr_factor
        result = self._losses(batch)
        summary = self._result(result)
        bad = [k for k, v in summary.terms.items() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLoss(bad)
        for _, opt, _ in self.groups:
            opt.zero_grad(set_to_none=True)
        if self.per_group_losses:
            self._backward_per_group(result)
        else:
            self.scaler.scale(result.total).backward()
        for _, opt, _ in self.groups:
            self.scaler.unscale_(opt)
        clip = self.settings["clip_norm"]
        if clip:
            params = [p for _, opt, _ in self.groups for g in opt.param_groups
                      for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        for _, opt, _ in self.groups:
            self.scaler.step(opt)
        self.scaler.update()
        self.module.project_constraints()
        return summary

    def _backward_per_group(self, result: LossResult) -> None:
        """Each group steps on the gradient of its own losses (a GAN's two players)."""
        grads = []
        for spec, opt, _ in self.groups:
            names = spec.get("loss")
            if names:
                wanted = {self.model.node(n)["name"] for name in names
                          for n in loss_terms_named(self.model, name)}
                loss = sum(v for k, v in result.terms.items() if k in wanted)
            else:
                loss = result.total
            params = [p for g in opt.param_groups for p in g["params"]]
            grads.append(torch.autograd.grad(loss, params, retain_graph=True,
                                             allow_unused=True))
        for (_, opt, _), group_grads in zip(self.groups, grads, strict=True):
            params = [p for g in opt.param_groups for p in g["params"]]
            for p, g in zip(params, group_grads, strict=True):
                p.grad = g

    @torch.no_grad()
    def eval_batch(self, batch: Mapping[str, np.ndarray]) -> StepResult:
        self.module.eval()
        return self._result(self._losses(batch))

    # -- weights and state
    def export_arrays(self) -> dict[str, np.ndarray]:
        return self.module.export_arrays()

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.module.load_arrays(arrays)

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {"rng.torch": torch.get_rng_state().numpy()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device).numpy()
        names = {id(t): n for n, t in self.module.canonical_tensors().items()}
        groups = []
        for i, (_, opt, _) in enumerate(self.groups):
            scalars = {}
            for p, state in opt.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        tensors[f"opt{i}.{names[id(p)]}.{key}"] = value.detach().cpu().numpy()
                    else:
                        scalars[f"{names[id(p)]}.{key}"] = float(value)
            groups.append(scalars)
        return tensors, {"groups": groups}

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None:
        torch.set_rng_state(torch.from_numpy(np.array(tensors["rng.torch"])))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(np.array(tensors["rng.cuda"])),
                                     self.device)
        by_name = self.module.canonical_tensors()
        for i, (_, opt, names) in enumerate(self.groups):
            scalars = state["groups"][i] if i < len(state["groups"]) else {}
            for name in names:
                p = by_name[name]
                entry: dict[str, Any] = {}
                prefix = f"opt{i}.{name}."
                for key, value in tensors.items():
                    if key.startswith(prefix):
                        entry[key[len(prefix):]] = torch.from_numpy(np.array(value)).to(p.device)
                for key, value in scalars.items():
                    if key.startswith(name + "."):
                        entry[key[len(name) + 1:]] = torch.tensor(value)
                if entry:
                    opt.state[p] = entry

    def open_board(self, folder: str) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        import os

        return SummaryWriter(os.path.join(folder, "tensorboard"))


def train_model(program: Program, model: ModelGraph, overrides: Mapping[str, Any],
                out: str | None = None, resume: bool = False, compile: bool = False,
                quiet: bool = False) -> tuple[Any, training.History, training.Data]:
    """Train one model on PyTorch; returns (driver, history, data). ``driver.engine.module``
    is the trained module."""
    return training.train_model(program, model, TorchEngine, overrides, out, resume, compile,
                                quiet)


def run_train(program: Program, args: Any) -> int:
    return training.run_train(program, args, TorchEngine)


def run_eval(program: Program, args: Any) -> int:
    from graphdsl.runtime.evaluate import run_eval as evaluate

    return evaluate(program, args, TorchEngine)
