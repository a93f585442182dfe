"""``train.strategy: fsdp``: fully sharded data parallelism (FSDP2) through Lightning.

Every process holds 1/N of each weight, gradient and optimizer state; a block's weights are
gathered just before it runs and freed after. Lightning's :class:`ModelParallelStrategy` runs
the processes and saves sharded checkpoints (a folder, one file per process); this module says
what is sharded: each block of the network's block lists, then the rest of the network, and the
EMA copy the same way (so its update stays shard-local). Frozen autoencoders stay whole.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor


class FullyShardedDataParallel(ModelParallelStrategy):
    """FSDP2 over every process of the run: one data-parallel mesh axis, no tensor parallelism."""

    def setup_environment(self) -> None:
        self._data_parallel_size, self._tensor_parallel_size = self.num_nodes * self.num_processes, 1
        super().setup_environment()


def shard(net: nn.Module, mesh, bf16_compute: bool = False) -> None:
    """FSDP2 units: every element of every ``nn.ModuleList`` in ``net`` (innermost first), then ``net``.

    ``bf16_compute``: blocks run on bf16 copies of the fp32 shards (the master weights) and
    gradients are reduced in fp32.
    """
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16_compute else None
    kwargs = {"mesh": mesh} if policy is None else {"mesh": mesh, "mp_policy": policy}
    for module in reversed(list(net.modules())):
        if isinstance(module, nn.ModuleList):
            for block in module:
                fully_shard(block, **kwargs)
    fully_shard(net, **kwargs)


def is_sharded(module: nn.Module) -> bool:
    """Whether any of ``module``'s parameters is a sharded DTensor."""
    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with sharded tensors gathered whole, on the CPU.

    A collective: under sharding every process must call it (each gets the whole state).
    """
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu()
            for k, v in module.state_dict().items()}


def end_processes() -> None:
    """Leave the process group (if any) once every process is done: without it, gloo's threads can
    abort the interpreter as it exits after sharded training on CPU."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
