"""Prompt files for the description pipeline: loading, validation, rendering.

A prompt is a plain text file under experiments/prompts/ with exactly one
placeholder: `{action}` (describe an action), `{appearance}` (describe how a
person of that appearance walks) or `{description}` (paraphrase a description).
Each stored text records the prompt's id (its file name) and the sha256 of the
file, so descriptions written with an edited prompt are never mistaken for
current ones.
"""

import dataclasses
import hashlib
import os
import re

from wat_jax.errors import fail

# Which placeholder each kind of prompt must contain.
PLACEHOLDERS = {"action": "action", "appearance": "appearance", "paraphrase": "description"}

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def prompts_dir() -> str:
    """experiments/prompts of the checkout this package lives in."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "experiments", "prompts")


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A validated prompt template."""

    id: str  # file name without extension, recorded with each text
    path: str
    template: str
    placeholder: str  # without braces, e.g. "action"
    sha256: str  # of the file's bytes

    def render(self, value: str) -> str:
        """The template with its placeholder replaced by `value`.

        str.replace rather than str.format, so braces elsewhere in the prompt
        (or in the value, e.g. JSON in a description) are left alone.
        """
        return self.template.replace("{" + self.placeholder + "}", value)


def resolve(path: str) -> str:
    """An absolute prompt path: as given if absolute, else under experiments/prompts."""
    return path if os.path.isabs(path) else os.path.join(prompts_dir(), path)


def load_prompt(path: str, kind: str, config_key: str = "describe") -> Prompt:
    """Reads and validates one prompt file.

    Args:
      path: absolute, or relative to experiments/prompts.
      kind: "action", "appearance" or "paraphrase"; decides the required placeholder.
      config_key: the config key that named the file, for error messages.

    Returns:
      The Prompt.

    Raises:
      InputError: the file is missing, not UTF-8, empty, lacks its placeholder or
        has another placeholder (most likely a typo).
    """
    placeholder = PLACEHOLDERS[kind]
    full = resolve(path)
    if not os.path.isfile(full):
        raise fail(full, f"prompt file not found (set by config.{config_key})")
    with open(full, "rb") as f:
        raw = f.read()
    try:
        template = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise fail(full, f"prompt file is not UTF-8 text ({e.reason} at byte {e.start})") from e
    if not template:
        raise fail(full, "prompt file is empty")
    found = set(_PLACEHOLDER_RE.findall(template))
    if placeholder not in found:
        raise fail(
            full,
            f"prompt file has no {{{placeholder}}} placeholder; a {kind} prompt "
            f"must contain it once where the {placeholder} goes",
        )
    others = sorted(found - {placeholder})
    if others:
        raise fail(
            full,
            f"unknown placeholder {{{others[0]}}}; a {kind} prompt takes only {{{placeholder}}}",
        )
    stem = os.path.splitext(os.path.basename(full))[0]
    return Prompt(
        id=stem,
        path=full,
        template=template,
        placeholder=placeholder,
        sha256=hashlib.sha256(raw).hexdigest(),
    )
