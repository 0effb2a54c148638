"""The decoder's tokenizer and chat template, from GGUF metadata or a tokenizer.json.

GGUF files carry the tokenizer as `tokenizer.ggml.*` metadata. For byte-level BPE
models (`tokenizer.ggml.model == "gpt2"`, e.g. SmolLM2) we rebuild a `tokenizers`
BPE from the vocab and merges, with the pre-tokenizer llama.cpp uses for the
model's `tokenizer.ggml.pre`. Hugging Face folders give us tokenizer.json directly.

The chat template is rendered with jinja2 when it is installed. Without it (the
project does not depend on jinja2), ChatML templates, the kind SmolLM2 ships,
are rendered by a small built-in renderer, which honours a default system prompt
written into the template; other templates fail with a clear message.
"""

import json
import os
import re

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from wat_jax.errors import fail

# llama.cpp's pre-tokenizer regex for llama-3 style BPE ("llama-bpe").
_LLAMA3_SPLIT = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# GGUF token types (llama.cpp's llama_token_type): control and user-defined are specials.
_CONTROL, _USER_DEFINED = 3, 4
# End-of-generation tokens by name, in case metadata names only one of them.
_EOG_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|end|>")


def _pre_tokenizer(pre: str, where: object):
    """The pre-tokenizer matching llama.cpp's behaviour for `tokenizer.ggml.pre`."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt2", "gpt-2"):
        return byte_level
    if pre in ("smollm", "starcoder", "refact"):
        # These split every digit on its own before the GPT-2 regex.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        split = pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated")
        return pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    raise fail(
        where,
        f"unsupported BPE pre-tokenizer tokenizer.ggml.pre='{pre}' "
        "(supported: default/gpt2, smollm/starcoder, llama-bpe)",
    )


class LlmTokenizer:
    """Text <-> token ids, special tokens and the chat template of one model."""

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        *,
        bos_id: int | None,
        eos_id: int | None,
        add_bos: bool,
        chat_template: str | None,
        where: object,
        special_tokens: dict[str, str] | None = None,
    ):
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.where = where
        self.special_tokens = special_tokens or {}
        stops = {eos_id} if eos_id is not None else set()
        for name in _EOG_NAMES:
            token_id = tokenizer.token_to_id(name)
            if token_id is not None:
                stops.add(token_id)
        self.stop_ids = frozenset(stops)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text become their ids."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of `ids`, without special tokens unless skip_special is False."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def render_chat(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ([{"role", "content"}, ...]) per the template."""
        messages = [dict(m) for m in messages]
        if not self.chat_template:
            raise fail(self.where, "the model has no chat template (tokenizer.chat_template)")
        try:
            import jinja2.sandbox  # optional dependency
        except ImportError:
            return _render_chatml(self.chat_template, messages, add_generation_prompt, self.where)
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message):
            raise fail(self.where, f"chat template error: {message}")

        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **self.special_tokens
        )

    def encode_chat(self, messages) -> list[int]:
        """Token ids of the rendered chat prompt, ending where the assistant starts."""
        return self.encode(self.render_chat(messages))


def _render_chatml(template: str, messages, add_generation_prompt: bool, where) -> str:
    """Renders ChatML (<|im_start|>role\\ncontent<|im_end|>\\n) without jinja2."""
    if "<|im_start|>" not in template or "<|im_end|>" not in template:
        raise fail(
            where,
            "cannot render this chat template without jinja2; it is not "
            "ChatML. Install jinja2 (pip install jinja2) to use this model",
        )
    parts = []
    # Templates like SmolLM2's insert a default system prompt when none is given.
    default_system = re.search(r"'<\|im_start\|>system\n(.*?)<\|im_end\|>\n'", template, re.DOTALL)
    if default_system and messages and messages[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{default_system.group(1)}<|im_end|>\n")
    for message in messages:
        parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def tokenizer_from_gguf(metadata: dict, where: object) -> LlmTokenizer:
    """Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise fail(
            where,
            f"unsupported GGUF tokenizer model tokenizer.ggml.model='{kind}' "
            "(only byte-level BPE 'gpt2' is supported; for SentencePiece "
            "models use a Hugging Face folder with tokenizer.json)",
        )
    tokens = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=False)
    tokenizer = tokenizers.Tokenizer(bpe)
    tokenizer.pre_tokenizer = _pre_tokenizer(metadata.get("tokenizer.ggml.pre", "default"), where)
    tokenizer.decoder = decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type", [])
    specials = [tokens[i] for i, t in enumerate(types) if t in (_CONTROL, _USER_DEFINED)]
    tokenizer.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in specials]
    )
    bos = metadata.get("tokenizer.ggml.bos_token_id")
    eos = metadata.get("tokenizer.ggml.eos_token_id")
    return LlmTokenizer(
        tokenizer,
        bos_id=bos,
        eos_id=eos,
        add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
        chat_template=metadata.get("tokenizer.chat_template"),
        where=where,
        special_tokens={
            "bos_token": tokens[bos] if bos is not None else "",
            "eos_token": tokens[eos] if eos is not None else "",
        },
    )


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", ...} in older tokenizer_config files
        return value.get("content")
    return value


def tokenizer_from_folder(folder: str) -> LlmTokenizer:
    """Builds the tokenizer from a Hugging Face folder (tokenizer.json + config files)."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise fail(folder, "no tokenizer.json in the model folder")
    tokenizer = tokenizers.Tokenizer.from_file(path)
    settings = {}
    config_path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            settings = json.load(f)
    template = settings.get("chat_template")
    template_path = os.path.join(folder, "chat_template.jinja")
    if template is None and os.path.isfile(template_path):
        with open(template_path) as f:
            template = f.read()
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    bos_text = _token_text(settings.get("bos_token"))
    eos_text = _token_text(settings.get("eos_token"))
    bos = tokenizer.token_to_id(bos_text) if bos_text else None
    eos = tokenizer.token_to_id(eos_text) if eos_text else None
    # tokenizer.json's post-processor is not applied (add_special_tokens=False), so
    # BOS is added by hand when tokenizer_config.json asks for it.
    return LlmTokenizer(
        tokenizer,
        bos_id=bos,
        eos_id=eos,
        add_bos=bool(settings.get("add_bos_token", False)),
        chat_template=template,
        where=folder,
        special_tokens={"bos_token": bos_text or "", "eos_token": eos_text or ""},
    )
