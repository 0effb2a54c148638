"""The description pipeline: backends, cleaning, retries, resume after kill -9, bad input."""

import collections
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests import fake_llm_server
from tests.fake_llm_server import FakeLLMServer
from wat_jax.configs import base_config
from wat_jax.errors import InputError
from wat_jax.text import backends, cleaning, describe, prompts
from wat_jax.text.openai_backend import OpenAIBackend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = [
    describe.DescribeKey("walk", "action", "walk"),
    describe.DescribeKey("t pose", "action", "t pose"),
    describe.DescribeKey(
        "Female+Backpack", "appearance", "a young woman carrying a backpack, wearing a dress"
    ),
]


def _keys(count):
    return [describe.DescribeKey(f"class{i}", "action", f"action number {i}") for i in range(count)]


def _cfg(url, **overrides):
    cfg = base_config().describe
    cfg.update(
        backend="openai",
        base_url=url,
        model="fake-chat",
        per_key=2,
        samples_per_request=2,
        concurrency=1,
        timeout_s=5.0,
        max_retries=4,
        backoff_s=0.01,
        max_backoff_s=0.05,
        extra_rounds=2,
    )
    cfg.update(overrides)
    return cfg


def _records(workdir):
    with open(os.path.join(workdir, describe.STORE_FILE)) as f:
        return [json.loads(line) for line in f]


def _assert_complete(workdir, keys, per_key):
    """Every key has indices 0..K-1 exactly once and no two texts of a key are equal."""
    records = _records(workdir)
    by_key = collections.defaultdict(list)
    for r in records:
        by_key[r["key"]].append(r)
    for k in keys:
        rows = by_key[k.key]
        assert sorted(r["index"] for r in rows) == list(range(per_key)), k.key
        assert len({cleaning.dedup_key(r["text"]) for r in rows}) == per_key, k.key
    return records


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# Cleaning.


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            (
                'Sure! Here is a detailed description of the movements:\n\n"A person walks forward, '
                'swinging the arms."\n\nI hope this helps!'
            ),
            "A person walks forward, swinging the arms.",
        ),
        (
            "Description: The person bends at the waist and reaches down.",
            "The person bends at the waist and reaches down.",
        ),
        (
            "**Jumping**\n- The knees bend deeply\n- The arms swing up as the feet leave the ground",
            "The knees bend deeply. The arms swing up as the feet leave the ground.",
        ),
        (
            "Here\u2019s a paraphrase: \u201cThe person kicks with the right leg.\u201d",
            "The person kicks with the right leg.",
        ),
        ("A person squats low. Then the person rises slowly and the arms", "A person squats low."),
        (
            "The feet shuffle. The feet shuffle. The arms stay still.",
            "The feet shuffle. The arms stay still.",
        ),
    ],
)
def test_clean_strips_chat_artefacts(raw, expected):
    assert cleaning.clean(raw, 10, 500) == (expected, cleaning.KEPT)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("I'm sorry, but I can't describe that.", "refusal"),
        ("As an AI language model, I do not have a body, but a person walks.", "refusal"),
        ("  \n ", "empty"),
        (None, "empty"),
        ("Walks.", "too_short"),
        ("A" * 600, "too_long"),
    ],
)
def test_clean_drops_what_cannot_be_rescued(raw, reason):
    assert cleaning.clean(raw, 10, 500) == ("", reason)


def test_clean_cuts_long_texts_after_a_whole_sentence():
    text, outcome = cleaning.clean("The person walks on. " * 40, 10, 100)
    assert outcome == cleaning.KEPT and text == "The person walks on."  # repeats removed too
    text, outcome = cleaning.clean(
        " ".join(f"Step {i} moves the foot." for i in range(40)), 10, 100
    )
    assert outcome == cleaning.KEPT and len(text) <= 100 and text.endswith("foot.")


# Offline backends.


def test_template_backend_is_deterministic_with_k_texts_naming_the_phrase(tmp_path):
    cfg = base_config().describe
    cfg.update(backend="template", per_key=11)  # > 8 templates: the second-sentence cycle
    first = describe.describe(KEYS, cfg, str(tmp_path / "a"))
    describe.describe(KEYS, cfg, str(tmp_path / "b"))
    records = _assert_complete(tmp_path / "a", KEYS, 11)
    assert _without_time(records) == _without_time(_records(tmp_path / "b"))
    phrase = {k.key: k.phrase for k in KEYS}
    assert all(phrase[r["key"]] in r["text"] for r in records)
    assert {r["backend"] for r in records} == {"template"}
    loaded = describe.load_descriptions(first)
    assert {k: len(v) for k, v in loaded.items()} == {k.key: 11 for k in KEYS}

    # Asking for more extends the store; nothing already written changes.
    cfg.per_key = 13
    describe.describe(KEYS, cfg, str(tmp_path / "a"))
    grown = _assert_complete(tmp_path / "a", KEYS, 13)
    assert _without_time(grown[: len(records)]) == _without_time(records)


def test_names_backend_writes_each_phrase_once(tmp_path):
    cfg = base_config().describe
    cfg.update(backend="names", per_key=5)
    path = describe.describe(KEYS, cfg, str(tmp_path))
    assert describe.load_descriptions(path) == {k.key: [k.phrase] for k in KEYS}


# The OpenAI-compatible backend against the fake server.


def test_scripted_failures_are_retried_with_exact_counts(tmp_path):
    script = ["500", ("429", 0.3), "malformed", ("timeout", 1.5)]
    with FakeLLMServer(script) as server:
        cfg = _cfg(server.url, timeout_s=0.5)
        backend = OpenAIBackend(cfg)
        describe.describe(KEYS, cfg, str(tmp_path), backend=backend)
        log = server.log
    _assert_complete(tmp_path, KEYS, 2)
    assert backend.stats["retries"] == 4
    assert [backend.stats[f"retry_{c}"] for c in ("5xx", "429", "malformed", "timeout")] == [1] * 4
    assert backend.stats["requests"] == len(log) == 4 + len(KEYS)  # 3 keys, one n=2 request each
    # Retry-After: 0.3 s, not the 0.02 s backoff.
    assert log[2]["time"] - log[1]["time"] >= 0.3
    assert {e["n"] for e in log} == {2} and {e["model"] for e in log} == {"fake-chat"}


def test_server_ignoring_n_gets_repeated_requests(tmp_path):
    with FakeLLMServer(ignore_n=True) as server:
        cfg = _cfg(server.url, per_key=3, samples_per_request=3)
        backend = OpenAIBackend(cfg)
        describe.describe(KEYS[:1], cfg, str(tmp_path), backend=backend)
        log = server.log
    _assert_complete(tmp_path, KEYS[:1], 3)
    assert [e["n"] for e in log] == [3, 2, None]  # n is left out when 1
    assert len({e["seed"] for e in log}) == 3
    assert backend.stats["fallback_requests"] == 2 and backend.stats["retries"] == 0


def test_records_carry_the_seed_each_text_was_sampled_with(tmp_path):
    # A server ignoring `n` answers one text per request; the repeats go out with
    # seed+1, seed+2, and each record must name the seed its text came from.
    with FakeLLMServer(ignore_n=True) as server:
        cfg = _cfg(server.url, per_key=3, samples_per_request=3, seed=5)
        describe.describe(KEYS[:1], cfg, str(tmp_path))
        log = server.log
    base = describe.request_seed(5, KEYS[0].key, 0, 0)
    assert [e["seed"] for e in log] == [base, base + 1, base + 2]
    records = sorted(_records(tmp_path), key=lambda r: r["index"])
    assert [r["seed"] for r in records] == [base, base + 1, base + 2]
    # The fake server's texts are a function of the seed: the record's seed reproduces it.
    content = log[0]["content"]
    assert [r["text"] for r in records] == [
        fake_llm_server.sample_text(content, base + j, 0) for j in range(3)
    ]


def test_model_missing_from_the_servers_list_is_one_error_naming_the_served_ones(tmp_path):
    with FakeLLMServer(models=["llama-3.1-8b", "qwen2.5:latest"]) as server:
        with pytest.raises(
            InputError,
            match=r"config.describe.model='fake-chat': not served by .*/v1; it serves "
            r"'llama-3.1-8b', 'qwen2.5:latest'",
        ):
            describe.describe(KEYS[:1], _cfg(server.url), str(tmp_path))
        assert server.log == [] and server.gets == ["/v1/models"]  # no chat request sent
        assert not (tmp_path / describe.STORE_FILE).exists()
        # A listed name (Ollama's "name" for "name:latest" too) is accepted.
        describe.describe(KEYS[:1], _cfg(server.url, model="qwen2.5"), str(tmp_path / "ok"))
        assert {e["model"] for e in server.log} == {"qwen2.5"}


def test_server_without_a_model_list_is_not_checked(tmp_path):
    with FakeLLMServer(models=None) as server:
        describe.describe(KEYS[:1], _cfg(server.url), str(tmp_path))
        assert server.gets == ["/v1/models"] and len(server.log) == 1


def test_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    from wat_jax import lock

    cfg = base_config().describe
    cfg.update(backend="template", per_key=2)
    with lock.hold(str(tmp_path), "train"):  # a live holder in this process
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, cfg.to_json(), json.dumps([]), str(tmp_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            capture_output=True,
            text=True,
        )
    assert child.returncode != 0
    assert f"the workdir is in use by train on host {socket.gethostname()}, pid {os.getpid()}" in (
        child.stderr
    )
    # A lock whose process is gone (here: a child that exited) is taken over.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    holder = dataclasses.replace(lock._me("describe"), pid=int(dead.stdout))
    (tmp_path / lock.LOCK_FILE).write_text(json.dumps(dataclasses.asdict(holder)))
    describe.describe(KEYS, cfg, str(tmp_path))
    assert not (tmp_path / lock.LOCK_FILE).exists()  # released after the run
    _assert_complete(tmp_path, KEYS, 2)


def test_concurrent_run_cleans_chat_artefacts_and_records_provenance(tmp_path):
    keys = _keys(8)
    with FakeLLMServer(default="chatty") as server:
        cfg = _cfg(server.url, per_key=4, samples_per_request=2, concurrency=4, seed=3)
        describe.describe(keys, cfg, str(tmp_path))
        assert len(server.log) == 8 * 2  # exactly K/n requests per key
    records = _assert_complete(tmp_path, keys, 4)
    for r in records:
        assert r["text"].startswith("A person shifts") and r["text"].endswith(".")
        assert r["prompt_id"] == "action_description" and r["model"] == "fake-chat"
        assert r["prompt_hash"] == prompts.load_prompt("action_description.txt", "action").sha256
        assert r["temperature"] == 0.7 and r["round"] == 0 and r["time"].endswith("+00:00")
    first = {(r["key"], r["index"]): r["seed"] for r in records if r["index"] % 2 == 0}
    assert first == {(k, i): describe.request_seed(3, k, i, 0) for k, i in first}


def test_refusals_are_dropped_and_asked_again_in_the_next_round(tmp_path):
    with FakeLLMServer(["refusal"]) as server:
        describe.describe(KEYS[:1], _cfg(server.url), str(tmp_path))
        assert len(server.log) == 2
    records = _assert_complete(tmp_path, KEYS[:1], 2)
    assert [r["round"] for r in records] == [1, 1]
    assert server.log[0]["seed"] != server.log[1]["seed"]


def test_key_short_of_texts_after_all_rounds_is_an_error_naming_it(tmp_path):
    with FakeLLMServer(default="same") as server:
        cfg = _cfg(server.url, extra_rounds=1)
        with pytest.raises(InputError, match=r"describe key 'walk'.*1 of 2 texts after 2 rounds"):
            describe.describe(KEYS[:1], cfg, str(tmp_path))
    assert len(_records(tmp_path)) == 1  # what was written is kept


def test_paraphrase_strategy_paraphrases_the_first_description(tmp_path):
    with FakeLLMServer() as server:
        cfg = _cfg(server.url, per_key=4, samples_per_request=3, strategy="paraphrase")
        describe.describe(KEYS, cfg, str(tmp_path))
        log = server.log
    records = _assert_complete(tmp_path, KEYS, 4)
    base = {r["key"]: r["text"] for r in records if r["index"] == 0}
    for r in records:
        assert r["prompt_id"] == ("paraphrase" if r["index"] else f"{r['kind']}_description")
    assert len(log) == 2 * len(KEYS)
    for k in KEYS:
        asked = [e for e in log if f": {k.phrase}." in e["content"]]
        assert len(asked) == 1 and asked[0]["n"] is None
        para = [e for e in log if base[k.key] in e["content"]]
        assert len(para) == 1 and para[0]["n"] == 3


def test_restarted_run_requests_only_missing_indices_and_is_deterministic(tmp_path):
    with FakeLLMServer() as server:
        cfg = _cfg(server.url, per_key=2, samples_per_request=1)
        describe.describe(KEYS, cfg, str(tmp_path / "a"))
        cfg.per_key = 3
        describe.describe(KEYS, cfg, str(tmp_path / "a"))
        assert len(server.log) == len(KEYS) * 3
        describe.describe(KEYS, cfg, str(tmp_path / "b"))
        assert len(server.log) == len(KEYS) * 6

    def texts(workdir):
        return sorted((r["key"], r["index"], r["text"]) for r in _records(workdir))

    assert texts(tmp_path / "a") == texts(tmp_path / "b")


def test_api_key_comes_from_the_named_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("WAT_JAX_TEST_KEY", "sk-test")
    monkeypatch.delenv("WAT_JAX_NO_SUCH_KEY", raising=False)
    with FakeLLMServer() as server:
        describe.describe(
            KEYS[:1], _cfg(server.url, api_key_env="WAT_JAX_TEST_KEY"), str(tmp_path / "a")
        )
        describe.describe(
            KEYS[:1], _cfg(server.url, api_key_env="WAT_JAX_NO_SUCH_KEY"), str(tmp_path / "b")
        )
        assert [e["auth"] for e in server.log] == ["Bearer sk-test", None]


# Interruption.

_CHILD = textwrap.dedent("""
    import json, sys
    from ml_collections import ConfigDict
    from wat_jax.text import describe as d
    keys = [d.DescribeKey(**k) for k in json.loads(sys.argv[2])]
    d.describe(keys, ConfigDict(json.loads(sys.argv[1])), sys.argv[3])
""")


def test_kill_9_mid_run_loses_nothing_and_repeats_no_request(tmp_path):
    keys, per_key, answered = _keys(6), 4, 9
    store = tmp_path / describe.STORE_FILE
    with FakeLLMServer(hang_after=answered) as server:
        cfg = _cfg(
            server.url,
            per_key=per_key,
            samples_per_request=1,
            concurrency=2,
            timeout_s=60.0,
            max_retries=0,
        )
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                cfg.to_json(),
                json.dumps([dataclasses.asdict(k) for k in keys]),
                str(tmp_path),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not (store.exists() and store.read_text().count("\n") >= answered):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child wrote too few records"
            time.sleep(0.05)
        while len(server.log) < answered + 2:  # both workers now wait on a hung request
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
        before = {(r["key"], r["index"]) for r in _records(tmp_path)}
        assert len(before) == answered
        server.release()
        restart_from = len(server.log)
        describe.describe(keys, cfg, str(tmp_path))
        restart = server.log[restart_from:]

    _assert_complete(tmp_path, keys, per_key)
    assert len(_records(tmp_path)) == len(keys) * per_key
    seed_of = {
        describe.request_seed(cfg.seed, k.key, i, 0): (k.key, i)
        for k in keys
        for i in range(per_key)
    }
    asked = [seed_of[e["seed"]] for e in restart]
    assert not set(asked) & before
    assert len(asked) == len(set(asked)) == len(keys) * per_key - answered


def test_torn_last_line_is_dropped_and_refilled(tmp_path):
    cfg = base_config().describe
    cfg.update(backend="template", per_key=3)
    path = describe.describe(KEYS, cfg, str(tmp_path))
    whole = _records(tmp_path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:  # as if killed halfway through writing the last line
        f.write(data[: -len(json.dumps(whole[-1])) // 2])
    with pytest.raises(json.JSONDecodeError):
        _records(tmp_path)
    assert sum(map(len, describe.load_descriptions(path).values())) == len(whole) - 1
    describe.describe(KEYS, cfg, str(tmp_path))
    assert _without_time(_assert_complete(tmp_path, KEYS, 3)) == _without_time(whole)


# Bad input.


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    cfg = _cfg(url, max_retries=2)
    backend = OpenAIBackend(cfg)
    with pytest.raises(InputError, match=rf"{url}/chat/completions: server unreachable after 3"):
        describe.describe(KEYS[:1], cfg, str(tmp_path), backend=backend)
    assert backend.stats["retry_connection"] == 2


@pytest.mark.parametrize("behaviour", ["not_chat", "model_404"])
def test_non_chat_or_unknown_model_names_the_model_without_retrying(tmp_path, behaviour):
    with FakeLLMServer(default=behaviour) as server:
        with pytest.raises(InputError, match=r"config.describe.model='fake-chat'"):
            describe.describe(KEYS[:1], _cfg(server.url), str(tmp_path))
        assert len(server.log) == 1


def test_prompt_file_without_its_placeholder_names_the_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Describe the action in detail.")
    cfg = _cfg("http://127.0.0.1:9/v1", action_prompt=str(bad))
    with pytest.raises(InputError, match=rf"{bad}: prompt file has no {{action}} placeholder"):
        describe.describe(KEYS[:1], cfg, str(tmp_path / "w"))
    bad.write_text("Describe {actoin} and {action}.")
    with pytest.raises(InputError, match=rf"{bad}: unknown placeholder {{actoin}}"):
        describe.describe(KEYS[:1], cfg, str(tmp_path / "w"))
    with pytest.raises(InputError, match="action_description.txt: prompt file has no {descr"):
        prompts.load_prompt("action_description.txt", "paraphrase")


def test_shipped_prompts_are_valid():
    for role, name in [
        ("action", "action_description.txt"),
        ("appearance", "appearance_description.txt"),
        ("paraphrase", "paraphrase.txt"),
    ]:
        prompt = prompts.load_prompt(name, role)
        assert "{" not in prompt.render("X") and "X" in prompt.render("X")


def test_unknown_backend_and_missing_local_module(tmp_path, monkeypatch):
    cfg = base_config().describe
    cfg.backend = "gpt"
    with pytest.raises(InputError, match="config.describe.backend: unknown backend 'gpt'"):
        describe.describe(KEYS, cfg, str(tmp_path))
    with pytest.raises(InputError, match="unknown backend 'gpt'"):
        backends.get_backend(cfg)
    monkeypatch.setitem(sys.modules, "wat_jax.text.local_llm", None)
    # Earlier tests may have imported it; `from wat_jax.text import local_llm`
    # would then read the package attribute and never consult sys.modules.
    import wat_jax.text

    monkeypatch.delattr(wat_jax.text, "local_llm", raising=False)
    cfg.backend = "local"
    with pytest.raises(InputError, match="config.describe.backend: 'local' needs"):
        backends.get_backend(cfg)


def test_store_from_another_backend_or_prompt_is_not_mixed_in(tmp_path):
    cfg = base_config().describe
    cfg.update(backend="template", per_key=2)
    describe.describe(KEYS, cfg, str(tmp_path))
    cfg.backend = "names"
    with pytest.raises(InputError, match=r"descriptions.jsonl:1: written by backend=template"):
        describe.describe(KEYS, cfg, str(tmp_path))


@pytest.mark.skipif(
    not os.environ.get("WAT_JAX_LLM_URL"),
    reason="integration: set WAT_JAX_LLM_URL (and WAT_JAX_LLM_MODEL) to a real "
    "OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1",
)
def test_integration_real_server(tmp_path):
    cfg = _cfg(
        os.environ["WAT_JAX_LLM_URL"],
        model=os.environ.get("WAT_JAX_LLM_MODEL", "default"),
        timeout_s=300.0,
        backoff_s=1.0,
        max_backoff_s=30.0,
        per_key=2,
        concurrency=2,
    )
    describe.describe(KEYS, cfg, str(tmp_path))
    records = _assert_complete(tmp_path, KEYS, 2)
    assert all(len(r["text"]) >= cfg.min_chars for r in records)


# A full disk and Ctrl-C: one line saying what the store keeps (wat_jax/errors.py).


def test_a_disk_filling_mid_append_keeps_the_written_texts_and_says_so(tmp_path, monkeypatch):
    import errno

    from wat_jax import errors, lock

    cfg = base_config().describe
    cfg.update(backend="template", per_key=3)
    store = str(tmp_path / describe.STORE_FILE)
    real_write, calls = os.write, []

    def write(fd, data):
        # The store's first append lands; the second gets half its bytes on disk, then
        # the disk is full: a torn last line, as a filling disk leaves it.
        if os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")) != os.path.realpath(store):
            return real_write(fd, data)
        calls.append(len(data))
        if len(calls) == 2:
            return real_write(fd, bytes(data[: len(data) // 2]))
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(errors.DiskError) as error:
        describe.describe(KEYS, cfg, str(tmp_path))
    with open(store, "rb") as f:
        data = f.read()
    complete = data.count(b"\n")
    assert complete >= 3 and not data.endswith(b"\n")
    assert str(error.value) == (
        f"{store}: could not write it: the disk is full (no space left on device); "
        f"descriptions.jsonl keeps the {complete} descriptions written before (its torn last "
        "line is cut on the next run); describe again to go on from there; free some space "
        "there and run again"
    )
    assert not (tmp_path / lock.LOCK_FILE).exists()
    first = data.split(b"\n")[:3]
    monkeypatch.setattr(os, "write", real_write)
    describe.describe(KEYS, cfg, str(tmp_path))  # the next run cuts the torn line, goes on
    _assert_complete(tmp_path, KEYS, 3)
    with open(store, "rb") as f:
        assert f.read().split(b"\n")[:3] == first


def test_ctrl_c_during_describe_says_what_the_store_keeps(tmp_path):
    from wat_jax import errors, lock

    cfg = base_config().describe
    cfg.update(backend="template", per_key=2)

    class Interrupted(backends.TemplateBackend):
        def texts(self, key, indices):
            if key.key != KEYS[0].key:
                raise KeyboardInterrupt
            return super().texts(key, indices)

    with pytest.raises(KeyboardInterrupt) as stop:
        describe.describe(KEYS, cfg, str(tmp_path), backend=Interrupted())
    assert errors.interrupted_line(stop.value) == (
        "interrupted: descriptions.jsonl keeps the 2 descriptions written before; "
        "describe again to go on from there"
    )
    assert not (tmp_path / lock.LOCK_FILE).exists()
    describe.describe(KEYS, cfg, str(tmp_path))
    _assert_complete(tmp_path, KEYS, 2)
