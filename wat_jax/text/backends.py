"""Description backends by config name, and the two that need no LLM.

`openai` and `local` are chat backends (`wat_jax.text.chat.ChatBackend`): they
complete prompts. `names` and `template` are offline: they write a key's texts
directly from its phrase (`texts(key, indices)`), with no prompt and no model,
so the paper's names-only ablation and the template baseline are one config
value away from the LLM runs.
"""

import hashlib

from absl import logging

from wat_jax.errors import fail
from wat_jax.text.chat import ChatBackend

BACKENDS = ("names", "template", "openai", "local")

# Phrases go mid-sentence, never first, so the phrase appears verbatim in every text.
_ACTION_TEMPLATES = (
    "A person performs the action '{phrase}', moving the arms, legs and torso to carry it out.",
    "Here someone is doing '{phrase}': the body shifts its weight as the limbs move.",
    "The motion shows a human doing '{phrase}', the joints moving together in a coordinated way.",
    "In this clip a person carries out '{phrase}' while keeping their balance.",
    "We see the movement '{phrase}' performed by a person, from its start to its end.",
    "The skeleton of a person doing '{phrase}' moves its hips, shoulders and knees over time.",
    "A human body goes through the action '{phrase}', using both the torso and the limbs.",
    "Someone performs '{phrase}', changing the position of the arms and legs as they go.",
)
_APPEARANCE_TEMPLATES = (
    "Walking down the street is {phrase}, moving at a steady pace.",
    "Seen here is {phrase}, walking with the arms swinging at each step.",
    "The pedestrian is {phrase}, stepping forward with the legs alternating in a regular stride.",
    "We see {phrase}, walking with the body swaying slightly from side to side.",
    "This walking sequence shows {phrase}, who moves with a natural gait.",
    "Passing by on foot is {phrase}, shifting weight from one foot to the other.",
    "The person walking is {phrase}, keeping an even rhythm from step to step.",
    "Strolling past the camera is {phrase}, the head level and the shoulders relaxed.",
)
# Appended to cycle through the templates again with a different second sentence.
_EXTRA_SENTENCES = (
    "The movement is smooth and unhurried.",
    "Each part of the body follows the rhythm of the motion.",
    "The posture stays upright throughout.",
    "The motion is repeated at a regular tempo.",
    "The steps and gestures are clear and deliberate.",
)


class NamesBackend:
    """The paper's names-only ablation: a key's one text is its own phrase."""

    name = "names"
    model = "none"
    prompt_id = "names"
    prompt_hash = ""

    def texts(self, key, indices) -> list[str]:
        if any(i != 0 for i in indices):
            raise ValueError("the names backend has one text per key")
        return [key.phrase for _ in indices]


class TemplateBackend:
    """Deterministic texts from fixed sentence templates; the offline baseline."""

    name = "template"
    model = "templates-v1"
    prompt_id = "templates"
    prompt_hash = hashlib.sha256(
        "\n".join(_ACTION_TEMPLATES + _APPEARANCE_TEMPLATES + _EXTRA_SENTENCES).encode()
    ).hexdigest()
    max_per_key = len(_ACTION_TEMPLATES) * (1 + len(_EXTRA_SENTENCES))

    def texts(self, key, indices) -> list[str]:
        """Text `i` of `key` for each i in `indices`: a pure function of (kind, phrase, i)."""
        templates = _ACTION_TEMPLATES if key.kind == "action" else _APPEARANCE_TEMPLATES
        out = []
        for i in indices:
            if not 0 <= i < self.max_per_key:
                raise fail(
                    "config.describe.per_key",
                    f"the template backend writes at most {self.max_per_key} texts per key",
                )
            text = templates[i % len(templates)].format(phrase=key.phrase)
            if i >= len(templates):
                text += " " + _EXTRA_SENTENCES[i // len(templates) - 1]
            out.append(text)
        return out


def is_offline(backend) -> bool:
    """True for backends that write texts directly rather than completing prompts."""
    return hasattr(backend, "texts")


def get_backend(cfg) -> ChatBackend:
    """The backend `cfg.backend` names (cfg is the experiment's config.describe).

    Returns a ChatBackend for "openai" and "local"; for "names" and "template" an
    offline backend with `texts(key, indices)` instead of `complete` (see is_offline).

    Raises:
      InputError: an unknown backend name, or "local" without wat_jax.text.local_llm.
    """
    if cfg.backend == "names":
        return NamesBackend()
    if cfg.backend == "template":
        return TemplateBackend()
    if cfg.backend == "openai":
        from wat_jax.text.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.backend == "local":
        try:
            from wat_jax.text import local_llm
        except ModuleNotFoundError as e:
            if e.name != "wat_jax.text.local_llm":
                raise
            raise fail(
                "config.describe.backend",
                "'local' needs wat_jax/text/local_llm.py (the JAX decoder), which this "
                "install lacks; use backend=openai with a local server instead",
            ) from e
        logging.info("describe: local JAX decoder, model %s", cfg.local_model)
        return local_llm.LocalBackend(cfg)
    raise fail(
        "config.describe.backend",
        f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}",
    )
