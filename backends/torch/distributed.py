"""Several processes under `torchrun`: the process group, DistributedDataParallel and FSDP2.

Nothing here is home-made: torchrun starts the processes and sets RANK, WORLD_SIZE and
LOCAL_RANK; `torch.distributed` connects them (NCCL between GPUs, gloo on CPU);
`DistributedDataParallel` averages the gradients during the backward pass, or
`fully_shard` (FSDP2, `--shard`) keeps only a shard of each parameter, gradient and
optimizer moment on each process. Both hook a module's `forward`, and training runs the
generated loss pass, so :class:`LossPass` presents the loss pass as a forward.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from graphdsl.runtime.distributed import World, launched_world

from .module import GraphModule, LossResult


class LossPass(nn.Module):
    """`compute_losses` as `forward`, for the wrappers that hook `forward`."""

    def __init__(self, module: GraphModule):
        super().__init__()
        self.module = module

    def forward(self, inputs: Mapping[str, torch.Tensor],
                targets: Mapping[str, torch.Tensor]) -> LossResult:
        return self.module.compute_losses(inputs, targets)


def join(device: torch.device) -> tuple[World, torch.device]:
    """This process's place and device; connects the process group when torchrun started
    several. Under CUDA each process takes LOCAL_RANK's GPU."""
    world = launched_world()
    if world.size == 1:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Left to the interpreter's exit, the group's threads can be torn down while still
        # running ("terminate called without an active exception"): close it first.
        atexit.register(_leave)
    world.reducer = functools.partial(_sum, device)
    return world, device


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _sum(device: torch.device, values: list[float]) -> list[float]:
    packed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    return [float(v) for v in packed.tolist()]


def wrap(module: GraphModule, world: World, device: torch.device, shard: bool,
         ddp: bool = True) -> tuple[nn.Module, nn.Module]:
    """(the pass training runs, the pass evaluation runs). With one process both are the
    plain loss pass. DDP's pass is for training only: evaluation needs no gradient sync.
    FSDP2 shards in place, so both run the sharded module (its forward gathers)."""
    passes = LossPass(module)
    if world.size == 1 or not (ddp or shard):
        return passes, passes
    if shard:
        from torch.distributed.fsdp import fully_shard

        fully_shard(passes)
        return passes, passes
    ddp = nn.parallel.DistributedDataParallel(
        passes, device_ids=[device.index] if device.type == "cuda" else None)
    return ddp, passes


def no_sync(train_pass: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP: skip the gradient all-reduce on all but the last accumulated pass."""
    if sync or not isinstance(train_pass, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return train_pass.no_sync()


def average_gradients(params: Iterator[torch.Tensor], world: World) -> None:
    """The engine-side mean for gradients DDP does not see (torch.autograd.grad, used when
    optimizer groups minimise their own losses)."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world.size


def settle(passes: nn.Module) -> None:
    """FSDP2 leaves the root's parameters gathered after a forward without backward (an
    evaluation): shard them again, so the module holds the parameters its optimizer
    steps, and reading them (a checkpoint) sees the shards."""
    reshard = getattr(passes, "reshard", None)
    if reshard is not None:
        reshard()


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def gathered(tensor: torch.Tensor) -> np.ndarray:
    """The whole tensor as numpy; a shard is gathered from every process (collective)."""
    if is_sharded(tensor):
        tensor = tensor.full_tensor()  # type: ignore[attr-defined]
    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy()


@torch.no_grad()
def assign(target: torch.Tensor, value: np.ndarray) -> None:
    """Copies a whole array into ``target``, keeping only this process's shard if it is one."""
    full = torch.from_numpy(np.asarray(value)).to(target.dtype)
    if is_sharded(target):
        from torch.distributed.tensor import distribute_tensor

        placed = distribute_tensor(full.to(target.device), target.device_mesh,  # type: ignore[attr-defined]
                                   target.placements)  # type: ignore[attr-defined]
        target.to_local().copy_(placed.to_local())  # type: ignore[attr-defined]
    else:
        target.copy_(full.reshape(target.shape))


def like(value: np.ndarray, reference: torch.Tensor) -> torch.Tensor:
    """An optimizer moment loaded from a checkpoint, sharded as its parameter is."""
    full = torch.from_numpy(np.array(value)).to(reference.device)
    if is_sharded(reference):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full, reference.device_mesh,  # type: ignore[attr-defined]
                                 reference.placements)  # type: ignore[attr-defined]
    return full
