"""Class names and attribute sets -> LLM descriptions of how the body moves.

The paper's contribution: a terse label ("walk") is a poor text target; several
rich descriptions of the movement written by an LLM are better. `describe`
writes K texts per key into WORKDIR/descriptions.jsonl, one JSON record per
text with everything needed to reproduce it (backend, model, prompt id and
sha256, temperature, seed, time).

The store is resumable: each key's texts have indices 0..K-1, a run requests
only the indices still missing, and each request's seed is a function of
(seed, key, index, round), so an interrupted run continues where it stopped,
never asks again for a text it has, and a restart is deterministic. Each
request's records are appended with one write; a line torn by a kill is
dropped on the next run.

Strategies: "direct" samples every text from the description prompt;
"paraphrase" (the paper's) writes one description (index 0) and then
paraphrases of it.
"""

import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Sequence

import ml_collections
from absl import logging

from wat_jax import errors, fileio, lock
from wat_jax.reporting import run_log
from wat_jax.errors import fail
from wat_jax.text import backends, cleaning, prompts
from wat_jax.text.chat import ChatRequest

STORE_FILE = "descriptions.jsonl"
KINDS = ("action", "appearance")
STRATEGIES = ("direct", "paraphrase")


@dataclasses.dataclass(frozen=True)
class DescribeKey:
    """One thing to describe."""

    key: str  # stable id: a class name ("walk") or an attribute-set id
    kind: str  # "action" (BABEL class) or "appearance" (DenseGait attribute set)
    phrase: str  # the terse label or attribute phrase the prompt is filled with


def request_seed(base_seed: int, key: str, index: int, round_: int) -> int:
    """The sampling seed of the request whose first text is (key, index) in round `round_`."""
    digest = hashlib.sha256(f"{base_seed}:{key}:{index}:{round_}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _read_store(path: str, repair: bool) -> list[dict]:
    """The store's records in file order; a torn last line is dropped (and cut off if repair)."""
    with open(path, "rb") as f:
        data = f.read()
    complete, _, torn = data.rpartition(b"\n")
    if torn.strip():
        logging.warning(
            "%s: dropping a torn last line (%d bytes) left by an interrupted run", path, len(torn)
        )
        if repair:
            fileio.atomic_write(path, lambda f: f.write(complete + b"\n" if complete else b""))
    records = []
    for number, line in enumerate(complete.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            ok = (
                isinstance(record.get("key"), str)
                and isinstance(record.get("text"), str)
                and isinstance(record.get("index"), int)
            )
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise fail(
                f"{path}:{number}",
                "not a description record (JSON with key, index, text); fix or move the file",
            )
        record["_line"] = number
        records.append(record)
    return records


def load_descriptions(path: str) -> dict[str, list[str]]:
    """Reads a descriptions.jsonl store.

    Args:
      path: the store `describe` wrote.

    Returns:
      key -> its texts, in file order.
    """
    if not os.path.exists(path):
        raise fail(path, "no descriptions; run --mode=describe first")
    by_key: dict[str, list[str]] = {}
    for record in _read_store(path, repair=False):
        by_key.setdefault(record["key"], []).append(record["text"])
    return by_key


def _append(path: str, rows: list[dict]) -> None:
    """Appends complete lines with one write(), so a kill leaves whole records or a torn tail.

    A full disk may cut the write short: the store then ends in a torn line, which the
    next run cuts off (`_read_store`), and the error is one DiskError line.
    """
    data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    view = memoryview(data.encode("utf-8"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        error = errors.disk_error(e, path)
        if error is None:
            raise
        raise error from e


def _kept(path: str) -> str:
    """What the store holds after a stop, for the one line of a Ctrl-C or a full disk."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return f"no {STORE_FILE} was written yet"
    torn = " (its torn last line is cut on the next run)" if data[-1:] not in (b"", b"\n") else ""
    lines = data.count(b"\n")
    return (
        f"{STORE_FILE} keeps the {lines} descriptions written before{torn}; "
        "describe again to go on from there"
    )


def _check(keys: Sequence[DescribeKey], cfg) -> None:
    if cfg.backend not in backends.BACKENDS:
        raise fail(
            "config.describe.backend",
            f"unknown backend {cfg.backend!r}; choose one of {', '.join(backends.BACKENDS)}",
        )
    if cfg.strategy not in STRATEGIES:
        raise fail("config.describe.strategy", f"{cfg.strategy!r}; choose direct or paraphrase")
    for name in ("per_key", "samples_per_request", "min_chars"):
        if int(cfg[name]) < 1:
            raise fail(f"config.describe.{name}", f"{cfg[name]}; must be at least 1")
    if cfg.max_chars < cfg.min_chars:
        raise fail("config.describe.max_chars", f"{cfg.max_chars} < min_chars={cfg.min_chars}")
    seen = set()
    for k in keys:
        if k.kind not in KINDS:
            raise fail(f"describe key {k.key!r}", f"kind {k.kind!r}; must be one of {KINDS}")
        if not k.key or not k.phrase.strip():
            raise fail(f"describe key {k.key!r}", "empty key or phrase")
        if k.key in seen:
            raise fail(f"describe key {k.key!r}", "appears twice")
        seen.add(k.key)


def _load_prompts(keys, cfg) -> dict[str, prompts.Prompt]:
    """Prompts this run needs, by role: "action", "appearance", "paraphrase"."""
    needed = {k.kind for k in keys} | ({"paraphrase"} if cfg.strategy == "paraphrase" else set())
    return {
        role: prompts.load_prompt(cfg[f"{role}_prompt"], role, config_key=f"describe.{role}_prompt")
        for role in sorted(needed)
    }


class _Run:
    """One describe run: the store's state, the backend, and the rounds of requests."""

    def __init__(self, keys, cfg, path, backend, prompt_by_role, have):
        self.keys, self.cfg, self.path, self.backend = keys, cfg, path, backend
        self.prompts = prompt_by_role
        self.have = have  # key -> {index: text}
        self.per_key = 1 if cfg.backend == "names" else int(cfg.per_key)
        self.cleaner = cleaning.Cleaner(int(cfg.min_chars), int(cfg.max_chars))
        for key, texts in have.items():
            for text in texts.values():
                self.cleaner.remember(key, text)
        self.progress = run_log.Progress(
            "describe", sum(len(self.missing(k)) for k in keys), unit="texts", every_s=10.0
        )

    def missing(self, k: DescribeKey) -> list[int]:
        return [i for i in range(self.per_key) if i not in self.have[k.key]]

    def _record(self, k, index, text, prompt_id, prompt_hash, seed, round_) -> dict:
        self.have[k.key][index] = text
        return {
            "key": k.key,
            "kind": k.kind,
            "index": index,
            "text": text,
            "backend": self.backend.name,
            "model": self.backend.model,
            "prompt_id": prompt_id,
            "prompt_hash": prompt_hash,
            "strategy": self.cfg.strategy,
            "seed": seed,
            "round": round_,
            # Offline backends do not sample.
            "temperature": None if seed is None else float(self.cfg.temperature),
            "top_p": None if seed is None else float(self.cfg.top_p),
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def run_offline(self) -> None:
        b = self.backend
        for k in self.keys:
            indices = self.missing(k)
            if indices:
                texts = b.texts(k, indices)
                _append(
                    self.path,
                    [
                        self._record(k, i, t, b.prompt_id, b.prompt_hash, None, 0)
                        for i, t in zip(indices, texts)
                    ],
                )
                self.progress.add(len(indices))

    def _jobs(self, round_: int, phase: str) -> list[tuple]:
        """(key, indices, prompt, ChatRequest) for what is missing in this phase."""
        cfg, jobs = self.cfg, []
        for k in self.keys:
            indices = self.missing(k)
            if phase == "paraphrase":
                if 0 not in self.have[k.key]:
                    continue
                prompt, value = self.prompts["paraphrase"], self.have[k.key][0]
            else:
                if cfg.strategy == "paraphrase":
                    indices = [i for i in indices if i == 0]
                prompt, value = self.prompts[k.kind], k.phrase
            step = int(cfg.samples_per_request)
            for start in range(0, len(indices), step):
                group = indices[start : start + step]
                request = ChatRequest(
                    messages=({"role": "user", "content": prompt.render(value)},),
                    n=len(group),
                    temperature=float(cfg.temperature),
                    top_p=float(cfg.top_p),
                    max_tokens=int(cfg.max_tokens),
                    seed=request_seed(int(cfg.seed), k.key, group[0], round_),
                )
                jobs.append((k, group, prompt, request))
        return jobs

    def _completions(self, requests):
        """(request index, texts, each text's seed) as they finish: streamed when the
        backend can. A backend that knows the seed each text was sampled with (a
        server ignoring `n` gets repeat requests with seed+1, +2, ...) reports it;
        otherwise every text of a request has the request's seed."""
        if hasattr(self.backend, "iter_complete_seeded"):
            yield from self.backend.iter_complete_seeded(requests)
            return
        if hasattr(self.backend, "iter_complete"):
            for i, texts in self.backend.iter_complete(requests):
                yield i, texts, [requests[i].seed] * len(texts)
            return
        batch = max(int(self.cfg.local_batch_size), 1)
        for start in range(0, len(requests), batch):
            for offset, texts in enumerate(self.backend.complete(requests[start : start + batch])):
                i = start + offset
                yield i, texts, [requests[i].seed] * len(texts)

    def run_chat(self, round_: int) -> None:
        phases = ("describe", "paraphrase") if self.cfg.strategy == "paraphrase" else ("describe",)
        for phase in phases:
            jobs = self._jobs(round_, phase)
            for i, texts, seeds in self._completions([job[3] for job in jobs]):
                k, group, prompt, request = jobs[i]
                rows = []
                # Sample j fills index group[j]; a dropped sample leaves its index for
                # the next round, which asks again under a new seed.
                for index, raw, seed in zip(group, texts, seeds):
                    text = self.cleaner(k.key, raw)
                    if text is not None:
                        rows.append(
                            self._record(k, index, text, prompt.id, prompt.sha256, seed, round_)
                        )
                if rows:
                    _append(self.path, rows)
                    self.progress.add(len(rows))


def _existing(records, keys, cfg, prompt_by_role, path) -> dict[str, dict[int, str]]:
    """Texts already stored for `keys`, after checking they come from this configuration."""
    wanted = {k.key for k in keys}
    if cfg.backend in ("names", "template"):
        offline = backends.get_backend(cfg)
        allowed = {offline.prompt_id: offline.prompt_hash}
        model = offline.model
    else:
        allowed = {p.id: p.sha256 for p in prompt_by_role.values()}
        model = cfg.model if cfg.backend == "openai" else None  # local: its own id, unchecked
    have = {k: {} for k in wanted}
    for r in records:
        if r["key"] not in wanted:
            continue
        where = f"{path}:{r['_line']}"
        if r.get("backend") != cfg.backend or (model is not None and r.get("model") != model):
            raise fail(
                where,
                f"written by backend={r.get('backend')} model={r.get('model')}, "
                f"but this run uses backend={cfg.backend}"
                + (f" model={model}" if model else "")
                + "; move the file away or use another workdir to keep both",
            )
        if allowed.get(r.get("prompt_id")) != r.get("prompt_hash"):
            raise fail(
                where,
                f"written with prompt {r.get('prompt_id')!r} "
                f"(sha256 {str(r.get('prompt_hash'))[:12]}), which is not a prompt of "
                "this run or has changed since; move the file away or use another workdir",
            )
        have[r["key"]].setdefault(r["index"], r["text"])
    return have


def describe(
    keys: Sequence[DescribeKey], cfg: ml_collections.ConfigDict, workdir: str, backend=None
) -> str:
    """Writes (or completes) cfg.per_key descriptions for each key.

    Args:
      keys: what to describe; `key` ids must be unique.
      cfg: the experiment's config.describe (see wat_jax/configs.py).
      workdir: the store is WORKDIR/descriptions.jsonl.
      backend: a backend to use instead of get_backend(cfg) (e.g. to read its stats);
        its name must be cfg.backend.

    Returns:
      The store's path.

    Raises:
      InputError: bad config, prompt or store; an unusable server; or a key still
        short of texts after cfg.extra_rounds extra rounds.
    """
    keys = list(keys)
    _check(keys, cfg)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, STORE_FILE)
    # The workdir lock (wat_jax/lock.py): main.py already holds it for --mode=describe;
    # a direct call takes it here. Another live writer is an error naming it.
    # A Ctrl-C or a full disk ends in one line saying what the store keeps.
    with lock.hold(workdir, "describe"), errors.keeping(lambda: _kept(path)):
        _describe_locked(keys, cfg, path, backend)
    return path


def _describe_locked(keys, cfg, path, backend) -> None:
    records = _read_store(path, repair=True) if os.path.exists(path) else []
    offline = cfg.backend in ("names", "template")
    prompt_by_role = {} if offline else _load_prompts(keys, cfg)
    have = _existing(records, keys, cfg, prompt_by_role, path)
    per_key = 1 if cfg.backend == "names" else int(cfg.per_key)
    todo = sum(1 for k in keys for i in range(per_key) if i not in have[k.key])
    logging.info(
        "describe: %d keys x %d texts with backend=%s; %d stored, %d to write",
        len(keys),
        per_key,
        cfg.backend,
        len(keys) * per_key - todo,
        todo,
    )
    if not todo:
        return
    if backend is None:
        backend = backends.get_backend(cfg)  # only now: the local backend loads a model
    wanted = {k.key for k in keys}
    for r in records:  # the local backend's model id is known only now
        if r["key"] in wanted and r.get("model") != backend.model:
            raise fail(
                f"{path}:{r['_line']}",
                f"written by model {r.get('model')!r}, but this "
                f"run uses {backend.model!r}; move the file away or use another workdir",
            )
    run = _Run(keys, cfg, path, backend, prompt_by_role, have)
    if offline:
        run.run_offline()
    else:
        rounds = 1 + int(cfg.extra_rounds)
        for round_ in range(rounds):
            run.run_chat(round_)
            if not any(run.missing(k) for k in keys):
                break
        logging.info(
            "describe: cleaning %s; backend %s",
            dict(run.cleaner.counts),
            dict(getattr(backend, "stats", {})),
        )
        short = [k for k in keys if run.missing(k)]
        if short:
            k = short[0]
            raise fail(
                f"describe key {k.key!r}",
                f"has {per_key - len(run.missing(k))} of {per_key} texts after {rounds} "
                f"rounds ({len(short)} keys short; outputs dropped: "
                f"{ {r: c for r, c in run.cleaner.counts.items() if r != 'kept'} }); "
                "check the model's answers, the prompts, describe.min_chars/max_chars, "
                "or raise describe.extra_rounds; what was written is kept",
            )
    run.progress.finish()
