"""The interface every description backend implements.

A backend turns chat requests into sampled completions. The description
pipeline (`wat_jax.text.describe`) owns prompts, cleaning and storage; a
backend only generates. Backends: `openai` (any OpenAI-compatible server),
`local` (our JAX llama decoder), and the LLM-free `names` and `template`.
"""

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """One prompt to complete `n` times."""

    messages: tuple[dict, ...]  # ({"role": "system"|"user"|"assistant", "content": str}, ...)
    n: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0


class ChatBackend(Protocol):
    """Generates completions; `complete` returns, per request, its n texts."""

    name: str  # backend name as in config: "openai", "local", ...
    model: str  # model identifier recorded with every text

    def complete(self, requests: list[ChatRequest]) -> list[list[str]]: ...
