"""A chat backend for any OpenAI-compatible /v1/chat/completions server.

vLLM (`vllm serve`), llama.cpp (`llama-server`), Ollama and hosted APIs all
speak this protocol. Standard library only (urllib and threads): a describe run
is a few thousand small requests, bounded by the server, not by the client.

Failures a long run meets are retried with exponential backoff: 429 (waiting
as long as Retry-After asks), 5xx, timeouts, dropped connections and replies
that are not chat-completion JSON. Failures that retrying cannot fix (an
unknown or non-chat model, a refused API key, a bad URL) raise InputError at
once. `stats` counts requests, retries by cause and n-fallback requests.

Before the first request the model name is checked against GET <base_url>/models
when the server answers it with a model list (vLLM, Ollama, llama.cpp and hosted
APIs do): a name the server does not serve is one error naming the ones it does.
Servers without the endpoint are not checked. Each text comes back with the seed
of the request that produced it (repeat requests to a server ignoring `n` send
seed+1, seed+2, ...), which describe records.
"""

import collections
import concurrent.futures
import email.utils
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request

from absl import logging

from wat_jax.errors import fail
from wat_jax.text.chat import ChatRequest

_MAX_RETRY_AFTER_S = 300.0


class _Retry(Exception):
    """A failure worth retrying; `wait_s` overrides the backoff when set (Retry-After)."""

    def __init__(self, cause: str, detail: str, wait_s: float | None = None):
        super().__init__(detail)
        self.cause, self.detail, self.wait_s = cause, detail, wait_s


def _retry_after(headers) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), _MAX_RETRY_AFTER_S)


def _error_message(raw: bytes) -> str:
    """The server's error message from an error body, else the body's start."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        error = json.loads(text).get("error", text)
        message = error.get("message", error) if isinstance(error, dict) else error
        return " ".join(str(message).split())[:300]
    except (ValueError, AttributeError):
        return " ".join(text.split())[:300]


def _parse_choices(raw: bytes) -> list[str]:
    """The choices' message contents in index order; _Retry when malformed."""
    try:
        data = json.loads(raw)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts = [c["message"].get("content") or "" for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        snippet = raw[:120].decode("utf-8", "replace")
        raise _Retry("malformed", f"not chat-completion JSON ({type(e).__name__}): {snippet!r}")
    if not texts:
        raise _Retry("malformed", "reply has no choices")
    return texts


class OpenAIBackend:
    """ChatBackend over HTTP; `concurrency` requests in flight at once."""

    name = "openai"

    def __init__(self, cfg):
        """cfg: the describe config (base_url, model, api_key_env, timeouts, retries)."""
        if not cfg.model:
            raise fail(
                "config.describe.model",
                "empty; set the model name the server serves (GET <base_url>/models lists them)",
            )
        if not cfg.base_url.startswith(("http://", "https://")):
            raise fail(
                "config.describe.base_url",
                f"{cfg.base_url!r} is not an http(s) URL, e.g. http://127.0.0.1:8080/v1",
            )
        self.model = cfg.model
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = float(cfg.timeout_s)
        self.max_retries = int(cfg.max_retries)
        self.backoff_s, self.max_backoff_s = float(cfg.backoff_s), float(cfg.max_backoff_s)
        self.concurrency = max(int(cfg.concurrency), 1)
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self._headers = {"Content-Type": "application/json", "User-Agent": "wat_jax-describe"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._api_key_env = cfg.api_key_env
        self.stats = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set when a run ends early: retries stop waiting
        self.base_url = cfg.base_url.rstrip("/")
        self._models_url = self.base_url + "/models"
        self._model_checked = False

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[name] += amount

    def served_models(self) -> list[str] | None:
        """The model ids GET <base_url>/models lists, or None when the server has no list."""
        request = urllib.request.Request(self._models_url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=min(self.timeout_s, 30.0)) as response:
                data = json.loads(response.read())
            models = [m["id"] for m in data["data"] if isinstance(m.get("id"), str)]
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            logging.info(
                "describe: %s gives no model list (%s); model not checked", self._models_url, e
            )
            return None
        except (KeyError, TypeError, AttributeError):
            return None
        return models or None

    def check_model(self) -> None:
        """InputError naming the served models when the server lists them and not ours."""
        if self._model_checked:
            return
        models = self.served_models()
        self._model_checked = True
        if models is None:
            return
        # Ollama lists "name:tag" and also serves "name" as "name:latest".
        if self.model in models or f"{self.model}:latest" in models:
            return
        shown = ", ".join(repr(m) for m in models[:10]) + (" ..." if len(models) > 10 else "")
        raise fail(
            f"config.describe.model={self.model!r}",
            f"not served by {self.base_url}; it serves {shown}",
        )

    def complete(self, requests: list[ChatRequest]) -> list[list[str]]:
        """Per request, its n texts (ChatBackend)."""
        results = [None] * len(requests)
        for i, texts in self.iter_complete(requests):
            results[i] = texts
        return results

    def iter_complete(self, requests: list[ChatRequest]):
        """Yields (request index, texts) as requests finish, so callers can store early."""
        for i, texts, _ in self.iter_complete_seeded(requests):
            yield i, texts

    def iter_complete_seeded(self, requests: list[ChatRequest]):
        """Yields (request index, texts, the seed each text was sampled with)."""
        self.check_model()
        pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, "describe-http")
        self._stop.clear()
        try:
            futures = {pool.submit(self._complete_one, r): i for i, r in enumerate(requests)}
            for future in concurrent.futures.as_completed(futures):
                texts, seeds = future.result()
                yield futures[future], texts, seeds
        finally:
            # On an error (or an abandoned generator) start nothing new and wake the
            # retry waits; requests in flight end within timeout_s on their own.
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _complete_one(self, request: ChatRequest) -> tuple[list[str], list[int]]:
        texts, seeds = [], []
        while len(texts) < request.n:
            # Servers that ignore `n` answer one choice; ask again for the rest, with
            # the seed moved on so the repeats are new samples.
            want = request.n - len(texts)
            seed = request.seed + len(texts)
            body = {
                "model": self.model,
                "messages": list(request.messages),
                "temperature": request.temperature,
                "top_p": request.top_p,
                "max_tokens": request.max_tokens,
                "seed": seed,
            }
            if want > 1:
                body["n"] = want  # omitted for 1: some servers reject the field
            if texts:
                self._count("fallback_requests")
            got = self._post(body)[:want]
            texts.extend(got)
            seeds.extend([seed] * len(got))
        return texts, seeds

    def _post(self, body: dict) -> list[str]:
        data = json.dumps(body).encode()
        for attempt in range(self.max_retries + 1):
            self._count("requests")
            try:
                return self._attempt(data)
            except _Retry as retry:
                if attempt == self.max_retries:
                    raise self._give_up(retry, attempt + 1) from None
                wait = retry.wait_s
                if wait is None:
                    wait = min(self.backoff_s * 2**attempt, self.max_backoff_s)
                self._count("retries")
                self._count(f"retry_{retry.cause}")
                logging.warning(
                    "describe: %s from %s (%s); retry %d/%d in %.1fs",
                    retry.cause,
                    self.url,
                    retry.detail,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                if self._stop.wait(wait):
                    raise fail(self.url, "cancelled: another request of this run failed")
        raise AssertionError("unreachable")

    def _attempt(self, data: bytes) -> list[str]:
        request = urllib.request.Request(self.url, data=data, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            self._raise_http(e)
        except TimeoutError as e:
            raise _Retry("timeout", f"no reply within {self.timeout_s:g}s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _Retry("timeout", f"no reply within {self.timeout_s:g}s") from e
            raise _Retry("connection", str(e.reason)) from e
        except (ConnectionError, http.client.HTTPException) as e:
            raise _Retry("connection", f"{type(e).__name__}: {e}") from e
        return _parse_choices(raw)

    def _raise_http(self, e: urllib.error.HTTPError):
        try:
            message = _error_message(e.read())
        except (OSError, http.client.HTTPException):
            message = e.reason or ""
        if e.code == 429:
            raise _Retry("429", f"rate limited: {message}", _retry_after(e.headers))
        if e.code >= 500:
            raise _Retry("5xx", f"HTTP {e.code}: {message}")
        if e.code in (401, 403):
            raise fail(
                self.url,
                f"HTTP {e.code}, the server refused the API key ({message}); "
                f"put the key in the environment variable {self._api_key_env}",
            )
        lowered = message.lower()
        if e.code in (400, 404, 422) and ("model" in lowered or "chat" in lowered):
            raise fail(
                f"config.describe.model={self.model!r}",
                f"{self.url} rejected it (HTTP {e.code}: {message}); it must be a chat "
                "model the server serves (GET <base_url>/models lists them)",
            )
        if e.code == 404:
            raise fail(
                self.url,
                f"HTTP 404 ({message}); config.describe.base_url must point "
                "at the API root, which usually ends in /v1",
            )
        raise fail(self.url, f"HTTP {e.code}: {message}")

    def _give_up(self, retry: _Retry, attempts: int):
        what = {
            "connection": "server unreachable",
            "timeout": "no reply in time",
            "429": "still rate limited",
            "5xx": "server errors",
            "malformed": "replies are not chat completions",
        }[retry.cause]
        hint = {
            "connection": "; start the server or fix config.describe.base_url",
            "timeout": "; raise config.describe.timeout_s or lower concurrency",
        }
        return fail(
            self.url,
            f"{what} after {attempts} attempts (last: {retry.detail}){hint.get(retry.cause, '')}",
        )
