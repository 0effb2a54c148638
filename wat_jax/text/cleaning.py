"""Turns raw model output into one clean description, or says why it was dropped.

Chat models wrap the text we asked for in chatter ("Sure! Here is a detailed
description:", "I hope this helps!"), markdown (bullets, bold titles), quotes and
labels ("Description:"), stop mid-sentence at the token limit, or refuse. The
text encoder would embed all of that, so it is stripped here; what cannot be
rescued (refusals, empty or out-of-bounds texts) is dropped and counted.
"""

import collections
import re

# Outcomes of `clean`; a text is kept only with KEPT.
KEPT = "kept"
DROP_REASONS = ("empty", "refusal", "too_short", "too_long", "duplicate")

_FENCE = re.compile(r"^\s*```.*$", re.MULTILINE)
_HEADING = re.compile(r"^\s*#{1,6}\s")
_BOLD_TITLE = re.compile(r"^\s*(\*\*|__)[^*_]{1,80}(\*\*|__)\s*:?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022+]|\d{1,2}[.)])\s+")
_AFFIRMATION = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|great|alright)(?:\s+thing)?\s*[!.,:]\s*",
    re.IGNORECASE,
)
_INTRO = re.compile(
    r"^(?:here(?:'s| is| are)|below is|the following is)\b[^:\n]{0,160}:\s*", re.IGNORECASE
)
_LABEL = re.compile(
    r"^(?:(?:rewritten|paraphrased|new|detailed|revised|final)\s+)?"
    r"(?:description|paraphrase|rewrite|version|text|answer|output|response)"
    r"(?:\s*#?\d+)?\s*:\s*",
    re.IGNORECASE,
)
_OUTRO = re.compile(
    r"^(?:i hope|hope this|let me know|feel free|note:|please note|this description|"
    r"this rewritten|this paraphrase|in this (?:description|version)|if you (?:need|want|would))",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i'm sorry|i am sorry|i apologi[sz]e|as an ai\b|as a language model|i cannot|"
    r"i can't|i can not|i'm unable|i am unable|i'm not able|i am not able|i won't)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d)]?(?=\s|$)")
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


def dedup_key(text: str) -> str:
    """The form two texts are compared in: lower case, letters and digits only."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _strip_quotes(text: str) -> str:
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        text = text[1:-1].strip()
    return text


def _split_sentences(text: str) -> list[str]:
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _lines(raw: str) -> list[str]:
    """Content lines, with fences, headings, bold titles and bullets removed."""
    out = []
    for line in _FENCE.sub("", raw.replace("\r\n", "\n")).split("\n"):
        if not line.strip() or _HEADING.match(line) or _BOLD_TITLE.match(line):
            continue
        bullet = _BULLET.match(line)
        line = _BULLET.sub("", line).replace("**", "").replace("__", "").strip()
        line = re.sub(r"(?<!\w)\*(\S[^*]*\S|\S)\*(?!\w)", r"\1", line)  # *emphasis*
        if bullet and line and line[-1] not in ".!?":
            line += "."  # bullets become sentences once joined into one paragraph
        out.append(line)
    return out


def _strip_chatter(text: str) -> str:
    """Removes leading affirmations, intros and labels, and trailing remarks."""
    for _ in range(3):  # "Sure! Here is the rewrite: Description: ..." stacks them
        before = text
        text = _strip_quotes(_LABEL.sub("", _INTRO.sub("", _AFFIRMATION.sub("", text))).strip())
        if text == before:
            break
    sentences = _split_sentences(text)
    while sentences and _OUTRO.match(_strip_quotes(sentences[-1])):
        sentences.pop()
    # Small models loop ("Cuts across the floor again." x 5); keep each sentence once.
    seen, kept = set(), []
    for sentence in sentences:
        if dedup_key(sentence) not in seen:
            seen.add(dedup_key(sentence))
            kept.append(sentence)
    return " ".join(kept)


def _cut_to_sentence(text: str, limit: int) -> str:
    """The longest prefix of whole sentences within `limit` characters ('' if none)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    return text[: ends[-1]].strip() if ends else ""


def clean(raw, min_chars: int, max_chars: int) -> tuple[str, str]:
    """Cleans one model output.

    Args:
      raw: the completion text (None counts as empty).
      min_chars: shorter texts are dropped.
      max_chars: longer texts are cut after their last whole sentence within the bound,
        or dropped when that leaves fewer than min_chars.

    Returns:
      (text, KEPT), or ("", reason) with reason one of DROP_REASONS.
    """
    text = " ".join(_lines(raw or ""))
    text = _strip_chatter(" ".join(text.replace("\u2019", "'").split()))
    text = _strip_quotes(text)
    if not text:
        return "", "empty"
    if _REFUSAL.search(text):
        return "", "refusal"
    if text[-1] not in ".!?\"')\u201d":
        # Stopped by max_tokens mid-sentence: keep the whole sentences before it.
        text = _cut_to_sentence(text, len(text)) or text
    if len(text) > max_chars:
        text = _cut_to_sentence(text, max_chars)
        if len(text) < min_chars:
            return "", "too_long"
    if len(text) < min_chars:
        return "", "too_short"
    return text, KEPT


class Cleaner:
    """Cleans texts for one run, dropping duplicates of what each key already has."""

    def __init__(self, min_chars: int, max_chars: int):
        self.min_chars, self.max_chars = min_chars, max_chars
        self.counts = collections.Counter()
        self._seen: dict[str, set[str]] = collections.defaultdict(set)

    def remember(self, key: str, text: str) -> None:
        """Registers a text the key already has (e.g. read back from the store)."""
        self._seen[key].add(dedup_key(text))

    def __call__(self, key: str, raw) -> str | None:
        """The cleaned text, or None when it is dropped (the reason is counted)."""
        text, outcome = clean(raw, self.min_chars, self.max_chars)
        if outcome == KEPT and dedup_key(text) in self._seen[key]:
            outcome = "duplicate"
        self.counts[outcome] += 1
        if outcome != KEPT:
            return None
        self.remember(key, text)
        return text
