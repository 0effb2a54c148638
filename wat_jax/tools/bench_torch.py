"""The PyTorch reference motion encoder, for timing against ours in one run.

Imported only by `wat_jax.tools.benchmark --compare=torch` when torch is importable;
torch is never part of the project install. The model is the reference's
(MotionCLIP fork, see PAPER.md): a linear frame embedding 150 -> 768,
sinusoidal positions, `torch.nn.TransformerEncoder` with post-norm layers, GELU
and dropout 0.1, the first frame's output, the projection head 768 -> 1024
(Linear, GELU, Linear, dropout, residual, LayerNorm), the mean of the MSE to
each text target, and AdamW (lr 2e-4, weight decay 0.1). Like the reference it
uses no padding mask.
"""

import math
import time

import numpy as np
import torch
from torch import nn


class ReferenceMotionEncoder(nn.Module):
    """Motion [B, T, J, F] -> embedding [B, embed_dim], the reference's layout."""

    def __init__(
        self,
        in_dim: int,
        width: int,
        layers: int,
        heads: int,
        mlp_dim: int,
        embed_dim: int,
        max_len: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.frame_embed = nn.Linear(in_dim, width)
        position = torch.arange(max_len)[:, None]
        div = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        table = torch.zeros(max_len, width)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)
        self.register_buffer("positions", table)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            width, heads, mlp_dim, dropout, activation="gelu", batch_first=True, norm_first=False
        )
        # nested tensors only matter with a padding mask, which the reference has none of
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(width, embed_dim)
        self.fc = nn.Linear(embed_dim, embed_dim)
        self.head_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        batch, frames = motion.shape[:2]
        x = self.frame_embed(motion.reshape(batch, frames, -1))  # [B, T, W]
        x = self.dropout(x + self.positions[:frames])
        x = self.encoder(x)[:, 0]  # [B, W], the first frame's output
        projected = self.proj(x)
        h = self.head_dropout(self.fc(nn.functional.gelu(projected)))
        return self.norm(h + projected)  # [B, E]


class TorchStep:
    """One reference train step on a fixed batch, timed step by step.

    Args:
      batch: numpy batch with `motion` [B, T, J, F] and `text` [B, K, E] targets.
      width, layers, heads, mlp_dim, dropout: the encoder's sizes.
      lr, weight_decay: AdamW's.
      threads: torch intra-op threads (the machine's cores when 0).
      seed: torch seed for init and dropout.
    """

    def __init__(
        self,
        batch: dict,
        width: int,
        layers: int,
        heads: int,
        mlp_dim: int,
        dropout: float = 0.1,
        lr: float = 2e-4,
        weight_decay: float = 0.1,
        threads: int = 0,
        seed: int = 0,
    ):
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        motion = np.asarray(batch["motion"], np.float32)
        self.motion = torch.from_numpy(motion)
        self.targets = torch.from_numpy(np.asarray(batch["text"], np.float32))  # [B, K, E]
        in_dim = int(np.prod(motion.shape[2:]))
        self.model = ReferenceMotionEncoder(
            in_dim, width, layers, heads, mlp_dim, self.targets.shape[-1], dropout=dropout
        )
        self.model.train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=weight_decay
        )

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def step(self) -> float:
        """Runs one step; returns its loss."""
        self.optimizer.zero_grad(set_to_none=True)
        emb = self.model(self.motion)  # [B, E]
        # mean over targets of each target's MSE (the reference's two terms)
        loss = torch.mean((emb[:, None, :] - self.targets) ** 2)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def run(self, steps: int) -> list[float]:
        """Times `steps` steps; returns each one's wall time in seconds."""
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - start)
        return times
