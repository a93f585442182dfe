"""torch.compile of a network in place, whole or block by block (regional compilation)."""

from __future__ import annotations

from torch import nn


def compile_network(net: nn.Module, mode: str, backend: str = "inductor", scope: str = "blocks") -> list[nn.Module]:
    """torch.compile ``net`` in place (``Module.compile``: parameter names stay as they are); returns
    the modules compiled.

    ``scope="blocks"``: each element of the outermost ``nn.ModuleList``s (the transformer's blocks,
    the MLP's residual blocks); blocks of one class share one compiled graph, so compile time does
    not grow with depth, and what lies between them (embeddings, heads) runs eagerly. A network
    without block lists, or ``scope="network"``, is compiled whole.
    """
    kwargs = {"backend": backend, "mode": None if mode == "default" else mode}
    blocks: list[nn.Module] = []
    if scope == "blocks":
        taken: list[str] = []
        for name, module in net.named_modules():
            if isinstance(module, nn.ModuleList) and not any(name.startswith(t + ".") for t in taken):
                blocks += list(module)
                taken.append(name)
    for module in blocks or [net]:
        module.compile(**kwargs)
    return blocks or [net]
