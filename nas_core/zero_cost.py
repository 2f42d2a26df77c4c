"""Zero-cost proxy: score an untrained network from one batch (no training epochs).

NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021): every rectifier unit
gives each input a binary code (is its input positive?); K[i, j] = number of units on which inputs i and j
agree; the score is log |det K|. Networks whose units separate the inputs of a batch into many distinct
linear regions score higher. PReLU and ReLU6 units count as rectifiers too (the face space uses PReLU).
"""

from __future__ import annotations

import torch
from torch import nn

_RECTIFIERS = (nn.ReLU, nn.PReLU, nn.ReLU6, nn.LeakyReLU)


@torch.no_grad()
def naswot_score(model: nn.Module, batch: torch.Tensor) -> float:
    """log |det K| of the batch's activation codes over every rectifier of ``model`` (train-mode BN)."""
    codes: list[torch.Tensor] = []

    def hook(module, inputs, output):
        codes.append((inputs[0].detach().reshape(len(inputs[0]), -1) > 0).to(torch.float64))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _RECTIFIERS)]
    was_training = model.training
    try:
        model.train()
        model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1)
    agree = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(agree).logabsdet)
