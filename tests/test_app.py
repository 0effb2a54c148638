"""The search page's server without a browser: its answers equal the search CLI's,
bad requests get one JSON line (never a traceback), the page loads nothing from
outside, and a bad start is one error line. The browser itself: tests/test_browser.py."""

import html.parser
import http.client
import json
import os
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests import cli
from wat_jax.errors import InputError
from wat_jax.tools import app as app_tool
from wat_jax.tools import search

QUERY = "a person jumps"


@pytest.fixture(scope="module")
def served(babel_smoke, tmp_path_factory):
    """The smoke BABEL run (a private copy: the first search writes W/index/) behind a
    server on a free port of 127.0.0.1, in this process."""
    workdir = cli.copy_run(babel_smoke.workdir, tmp_path_factory.mktemp("app") / "run")
    app = app_tool.SearchApp(str(workdir))
    server = app_tool.make_server(app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield app, f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def call(base: str, path: str, body=None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, payload, kind = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, payload, kind = e.code, e.read(), e.headers
    text = payload.decode("utf-8")
    if kind.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(text)
    return status, text


def test_binds_this_machine_only_by_default(served):
    app, base = served
    assert base.startswith("http://127.0.0.1:")
    server = app_tool.make_server(app)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_search_answers_what_the_search_cli_computes(served):
    app, base = served
    status, answer = call(base, "/api/search", {"query": QUERY, "k": 7})
    assert status == 200
    expected = search.run_search(app.workdir, [QUERY], k=7)["results"][0]["hits"]
    assert [h["row"] for h in answer["hits"]] == [h["row"] for h in expected]
    np.testing.assert_allclose(
        [h["score"] for h in answer["hits"]], [h["score"] for h in expected], rtol=0, atol=1e-6
    )
    scores = [h["score"] for h in answer["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert set(answer["hits"][0]) >= {"rank", "score", "source", "start_s", "labels", "row"}


@pytest.mark.parametrize(
    "body,words",
    [
        ({"query": ""}, "empty query"),
        ({"query": "   \n\t "}, "empty query"),
        ({}, "empty query"),
        ({"query": 12}, "query: must be text, got int"),
        ({"query": "x" * 10_000}, "10,000 characters is too long"),
        ({"query": "é" * 10_000}, "10,000 characters is too long"),
        ({"query": QUERY, "k": 0}, "k: must be between 1 and 100"),
        ({"query": QUERY, "k": "many"}, "k: must be a whole number"),
        ({"query": QUERY, "k": True}, "k: must be between"),
    ],
)
def test_bad_queries_get_one_line_on_the_page(served, body, words):
    _, base = served
    status, answer = call(base, "/api/search", body)
    assert status == 400
    assert words in answer["error"]
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_bad_requests_get_json_errors_not_pages(served):
    _, base = served
    assert call(base, "/api/search", raw=b"{not json")[0] == 400
    assert call(base, "/api/search", raw=b"[1, 2]")[1] == {
        "error": "request body must be a JSON object"
    }
    assert call(base, "/api/search", raw=b"\xff\xfe")[0] == 400
    # A body over the limit is refused from its length alone, before it is read.
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/search")
    connection.putheader("Content-Length", str(app_tool.MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]
    connection.close()
    status, answer = call(base, "/../../etc/passwd")
    assert status == 404 and "no such page" in answer["error"]
    assert call(base, "/api/nothing", {"a": 1})[0] == 404


def test_skeleton_of_a_window(served):
    app, base = served
    status, skel = call(base, "/api/skeleton?row=0")
    assert status == 200
    points = np.asarray(skel["points"])
    frames, joints, two = points.shape
    assert two == 2 and 1 < frames <= app_tool.SKELETON_FRAMES
    assert np.isfinite(points).all()
    assert np.asarray(skel["visible"]).shape == (frames, joints)
    assert skel["bones"] and all(0 <= a < joints and 0 <= b < joints for a, b in skel["bones"])
    assert len(skel["sides"]) == joints and skel["kind"] == "smpl24"
    last = len(app.split["index"]) - 1
    for row in (-1, last + 1, "x", None):
        status, answer = call(base, f"/api/skeleton?row={row}")
        assert status == 400 and answer["error"].startswith("row: must be"), answer


def test_motion_to_texts_ranks_as_classify(served):
    app, base = served
    status, answer = call(base, "/api/texts?row=2&k=3")
    assert status == 200
    ranked = app.run.classify(
        np.asarray(app.split["motion"][2:3]), np.asarray(app.split["mask"][2:3]), top_k=3
    )[0]
    assert [(t["key"], round(t["score"], 6)) for t in answer["texts"]] == [
        (c, round(s, 6)) for c, s in ranked
    ]
    truth = np.asarray(app.split["labels"][2]) > app.threshold
    assert answer["labels"] == [c for c, on in zip(app.split["classes"], truth) if on]


def test_babel_timeline_with_the_query_intervals(served):
    app, base = served
    source = app.sequences()[0]["source"]
    status, answer = call(base, "/api/timeline", {"source": source, "query": QUERY})
    assert status == 200, answer
    assert answer["sequence"] == source and answer["segments"]
    assert answer["ground_truth"]["segments"]
    assert answer["query"]["text"] == QUERY
    # intervals, or "not found" below the run's calibrated threshold (the next test)
    assert answer["query"]["intervals"] or answer["query"]["found"] is False
    assert len(answer["query"]["curve"]) == len(answer["frames"]["time_s"])
    status, answer = call(base, "/api/timeline", {"source": source, "query": None})
    assert status == 200 and answer["query"] is None
    status, answer = call(base, "/api/timeline", {"source": "../../etc/passwd"})
    assert status == 400 and "is not one of this run's val sequences" in answer["error"]
    status, answer = call(base, "/api/timeline", {"source": source, "query": "q" * 5000})
    assert status == 400 and "too long" in answer["error"]


def test_timeline_answers_not_found_as_the_timeline_cli_does(served):
    """The page's timeline keeps only intervals that reach the not-found threshold the
    run's evaluation calibrated (eval/step_<N>.json), as `python -m wat_jax.timeline` does."""
    from wat_jax.tools import timeline as timeline_cli

    app, base = served
    threshold, where = timeline_cli.calibrated_threshold(app.workdir, app.run.step)
    assert threshold is not None, where
    for seq in app.sequences()[:3]:
        status, answer = call(base, "/api/timeline", {"source": seq["source"], "query": QUERY})
        assert status == 200, answer
        query = answer["query"]
        assert query["not_found_threshold"] == threshold
        assert query["found"] == bool(query["intervals"])
        assert query["found"] == (query["peak_score"] >= threshold)
        assert all(i["score"] >= threshold for i in query["intervals"])


def test_info_offers_example_queries_from_the_run(served):
    app, base = served
    status, info = call(base, "/api/info")
    assert status == 200
    assert info["task"] == "babel60" and info["timeline"] is True
    assert info["examples"] and set(info["examples"]) <= set(app.run.phrases)
    assert info["sequences"] and info["num_windows"] == len(app.split["index"])


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_the_page_loads_nothing_from_outside(served):
    _, base = served
    status, page = call(base, "/")
    assert status == 200 and "<title>wat_jax search</title>" in page
    links = _Links()
    links.feed(page)
    assert sorted(links.urls) == ["/app.css", "/app.js"]
    for name in ("/app.js", "/app.css"):
        status, text = call(base, name)
        assert status == 200 and text.strip()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_densegait_runs_have_no_timeline(densegait_smoke, tmp_path):
    workdir = cli.copy_run(densegait_smoke.workdir, tmp_path / "run")
    app = app_tool.SearchApp(str(workdir))
    assert app.info()["timeline"] is False
    with pytest.raises(InputError, match="the timeline needs a BABEL run"):
        app.timeline(app.sequences()[0]["source"], None)
    hits = app.search("a person carrying a backpack", 5)["hits"]
    assert len(hits) == 5 and hits[0]["rank"] == 1
    assert app.skeleton(0)["kind"] == "openpose18"


@pytest.mark.parametrize(
    "args,words",
    [
        (["--workdir=/no/such/run"], "error: --workdir: /no/such/run: no such folder"),
        (["--workdir="], "error: --workdir: required"),
        (["--workdir={tmp}", "--port=70000"], "error: --port: must be between 0 and 65535"),
        (["--workdir={tmp}"], "no config.json here"),
    ],
)
def test_a_bad_start_is_one_error_line(tmp_path, args, words):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = cli.run(["wat_jax.tools.app", "--port=0", *args], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert words in cli.last_line(proc), proc.stderr[-2000:]


def test_a_port_in_use_is_said_before_the_run_loads(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        # No run is needed: the port is taken before the workdir's contents are read.
        proc = cli.run(["wat_jax.tools.app", f"--workdir={tmp_path}", f"--port={port}"])
    finally:
        holder.close()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert cli.last_line(proc) == (
        f"error: --port: 127.0.0.1:{port} is in use; pick another (--port=0 picks a free one)"
    )


def test_the_command_line_binds_127_0_0_1_unless_told():
    proc = cli.run(["wat_jax.tools.app", "--helpshort"], timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "--host: Address to listen on" in proc.stdout
    assert "(default: '127.0.0.1')" in proc.stdout.split("--host:")[1].split("--")[0]
    assert os.path.exists(os.path.join(app_tool.STATIC_DIR, "index.html"))
