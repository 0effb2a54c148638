"""A search page over a trained run, served on this machine.

    python -m wat_jax.tools.app --workdir=W [--port=8765] [--host=127.0.0.1] [--split=val]

Open the printed address in a browser: type a sentence and the page lists the
gallery windows nearest to it (score, source, time, labels, and the skeleton moving);
pick a hit for the texts nearest to that motion; on a BABEL run, the timeline of a
val sequence with the query's intervals. Everything runs offline: the standard
library's HTTP server, one static page (wat_jax/tools/app_static/) and the run.

Results are the search CLI's: each query goes through `wat_jax.tools.search.run_search`
(the same index, text encoder and ranking), the motion-to-texts panel through
`Run.classify` (`wat_jax.load(W)`), the timeline through `wat_jax.tools.timeline`.
The server binds 127.0.0.1 unless --host says otherwise. Bad input on the page
(an empty or overlong query, a row that does not exist) gets a message there; a bad
--workdir or a port in use is one error line at start.

The JSON API the page uses (POST bodies are JSON):
  GET  /api/info                    the run: task, step, classes, example queries, sequences
  POST /api/search   {query, k}     the top-k windows
  GET  /api/skeleton?row=N          a window's 2-D skeleton per frame, bones, sides
  GET  /api/texts?row=N&k=5         the class or attribute texts nearest to window N
  POST /api/timeline {source, query}  a BABEL val sequence's timeline
"""

import errno
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import urllib.parse

import numpy as np
from absl import logging

from wat_jax.errors import InputError, exits_on_input_error, fail

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_static")
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
MAX_QUERY_CHARS = 1000  # a query is a sentence; the encoder reads its first tokens only
MAX_TOP_K = 100
MAX_BODY_BYTES = 1 << 20
SKELETON_FRAMES = 60  # frames sent per skeleton (longer windows are subsampled)
TIMELINE_FRAMES = 1500  # per-frame rows of a timeline sent to the page
EXAMPLE_QUERIES = 8


class SearchApp:
    """The run behind the page: its search, skeletons, nearest texts and timelines.

    One lock serialises the model's work (the CPU is the bottleneck anyway, and the
    search index is built once, by the first query).
    """

    def __init__(self, workdir: str, split: str = "val", step: int | None = None):
        from wat_jax.reporting import report
        from wat_jax.tools import search

        workdir = os.path.abspath(workdir)
        if not os.path.isdir(workdir):
            raise fail("--workdir", f"{workdir}: no such folder; give a trained run's workdir")
        if not os.path.exists(os.path.join(workdir, "config.json")):
            raise fail(
                "--workdir",
                f"{workdir}: no config.json here; give a trained run's workdir "
                "(python -m wat_jax.main --mode=train writes it)",
            )
        import wat_jax

        self.workdir, self.split_name = workdir, split
        self.run = wat_jax.load(workdir, step)
        search.check_text_encoder(self.run.config)
        self.split = report.read_split(workdir, split)
        self.tree = report.config_tree(workdir)
        self.threshold = float(self.run.config.data.threshold)
        self._lock = threading.Lock()
        self._skeletons: dict[int, dict] = {}
        # The first search builds (or loads) the gallery index and loads the text
        # encoder, so the page's first query is as fast as the next ones.
        self.search(self.example_queries()[0], 1)

    # ---- what the page asks -------------------------------------------------------------

    def info(self) -> dict:
        from wat_jax import tasks

        return {
            "workdir": self.workdir,
            "task": self.run.config.task,
            "step": int(self.run.step),
            "split": self.split_name,
            "num_windows": len(self.split["index"]),
            "classes": list(self.run.classes),
            "examples": self.example_queries(),
            "timeline": bool(tasks.get_task(self.run.config.task).has_timeline),
            "sequences": self.sequences(),
            "max_query_chars": MAX_QUERY_CHARS,
        }

    def example_queries(self) -> list[str]:
        """Up to EXAMPLE_QUERIES of the run's class or attribute phrases, spread over them."""
        phrases = [p for p in (self.run.phrases or self.run.classes) if p and p.strip()]
        if not phrases:
            return ["a person walking"]
        picks = np.unique(np.linspace(0, len(phrases) - 1, min(EXAMPLE_QUERIES, len(phrases))))
        return [phrases[int(i)] for i in picks]

    def sequences(self) -> list[dict]:
        """The recordings the split's windows come from, in first-seen order."""
        seen = {}
        for row in self.split["index"]:
            source = row.get("source")
            if source is not None and source not in seen:
                seen[source] = {"source": source, "sid": row.get("babel_sid")}
        return list(seen.values())

    def search(self, query, k=10) -> dict:
        """The CLI's search for one query: {"query", "step", "num_windows", "hits"}."""
        from wat_jax.tools import search

        query = check_query(query)
        k = check_int("k", k, 1, MAX_TOP_K)
        with self._lock:
            answer = search.run_search(
                self.workdir, [query], k=k, split=self.split_name, step=int(self.run.step)
            )
        return {
            "query": query,
            "step": answer["step"],
            "num_windows": answer["num_windows"],
            "hits": answer["results"][0]["hits"],
        }

    def _row(self, row) -> int:
        return check_int("row", row, 0, len(self.split["index"]) - 1)

    def skeleton(self, row) -> dict:
        """Window `row` as 2-D points per real frame (at most SKELETON_FRAMES), for a canvas."""
        from wat_jax.reporting import pictures, report

        row = self._row(row)
        if row not in self._skeletons:
            meta = self.split["index"][row]
            motion = report.window_for_drawing(self.split["motion"][row], meta)
            real = np.asarray(self.split["mask"][row], bool)
            rot6d = str(report.lookup(self.tree, "data.rot6d", "rows"))
            points, visible, bones, sides, kind = pictures.skeleton_frames(motion[real], rot6d)
            keep = np.unique(np.linspace(0, len(points) - 1, min(SKELETON_FRAMES, len(points))))
            keep = keep.round().astype(int)
            fps = float(report.lookup(self.tree, "data.fps", 30.0))
            self._skeletons[row] = {
                "row": row,
                "kind": kind,
                "fps": fps * len(keep) / max(len(points), 1),
                "points": np.round(points[keep], 4).tolist(),  # [T, J, 2]
                "visible": np.asarray(visible[keep], int).tolist(),  # [T, J]
                "bones": [list(map(int, b)) for b in bones],
                "sides": list(sides),
            }
        return self._skeletons[row]

    def texts(self, row, k=5) -> dict:
        """The class (or attribute) texts nearest to window `row`, as `Run.classify` ranks."""
        row = self._row(row)
        k = check_int("k", k, 1, MAX_TOP_K)
        meta = self.split["index"][row]
        labels = np.asarray(self.split["labels"][row])
        truth = [c for c, v in zip(self.split["classes"], labels) if v > self.threshold]
        with self._lock:
            ranked = self.run.classify(
                np.asarray(self.split["motion"][row : row + 1]),
                np.asarray(self.split["mask"][row : row + 1]),
                top_k=k,
            )[0]
        phrases = dict(zip(self.run.classes, self.run.phrases or self.run.classes))
        return {
            "row": row,
            "source": meta.get("source"),
            "start_s": meta.get("start_s"),
            "labels": truth,
            "texts": [
                {"rank": i + 1, "key": c, "phrase": phrases.get(c, c), "score": s}
                for i, (c, s) in enumerate(ranked)
            ],
        }

    def timeline(self, source, query=None) -> dict:
        """The timeline of one of the split's BABEL recordings, with the query's intervals."""
        from wat_jax import tasks
        from wat_jax.data import amass, babel_sequences
        from wat_jax.tools import timeline as timeline_cli

        config = self.run.config
        if not tasks.get_task(config.task).has_timeline:
            raise fail("timeline", f"the timeline needs a BABEL run; this one is {config.task}")
        if not isinstance(source, str) or source not in {s["source"] for s in self.sequences()}:
            raise fail("source", f"{source!r} is not one of this run's {self.split_name} sequences")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            query = None
        if query is not None:
            query = check_query(query)
        amass_root, _ = babel_sequences.raw_dirs(config.data, self.workdir)
        path = amass.resolve(amass_root, source)
        if path is None:
            raise fail(source, f"not found under {amass_root} (the run's raw data)")
        with self._lock:
            seq = timeline_cli.read_motion(config, self.workdir, path)
            # "not found" as the timeline CLI answers it: the threshold evaluation calibrated
            found_at, found_source = timeline_cli.calibrated_threshold(self.workdir, self.run.step)
            answer = timeline_cli.run_timeline(
                self.run,
                seq,
                query,
                max_frames=TIMELINE_FRAMES,
                found_at=found_at,
                found_source=found_source,
            )
        return dict({k: v for k, v in answer.items() if not k.startswith("_")}, sequence=source)


def check_query(query) -> str:
    """The query stripped; InputError for an empty, overlong or non-text one."""
    if query is not None and not isinstance(query, str):
        raise fail("query", f"must be text, got {type(query).__name__}")
    if query is None or not query.strip():
        raise fail("query", "empty query; type a sentence such as 'a person walking slowly'")
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise fail(
            "query",
            f"{len(query):,} characters is too long; keep it under {MAX_QUERY_CHARS:,} "
            "(one sentence: the text encoder reads only its first tokens)",
        )
    return query


def check_int(name: str, value, lo: int, hi: int) -> int:
    """`value` (an int or a string of digits) within [lo, hi]; InputError otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise fail(name, f"must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or not lo <= number <= hi:
        raise fail(name, f"must be between {lo} and {hi}, got {value!r}")
    return number


# ---- HTTP ---------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    """Static files and the JSON API; every error is a JSON {"error": one line}."""

    app: SearchApp  # set on the subclass make_server builds
    server_version = "wat_jax"

    def log_message(self, format, *args):
        logging.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _answer(self, fn, *args) -> None:
        try:
            self._json(200, fn(*args))
        except InputError as e:
            self._error(400, str(e))
        except Exception as e:  # noqa: BLE001 - a bug: one line to the page and the log
            logging.error("%s %s failed: %s: %s", self.command, self.path, type(e).__name__, e)
            self._error(500, f"internal error ({type(e).__name__}: {e}); see the server's log")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        if url.path in STATIC_FILES:
            name, content_type = STATIC_FILES[url.path]
            try:
                with open(os.path.join(STATIC_DIR, name), "rb") as f:
                    self._send(200, f.read(), content_type)
            except OSError as e:
                self._error(500, f"{name}: cannot read the page ({e.strerror or e})")
        elif url.path == "/api/info":
            self._answer(self.app.info)
        elif url.path == "/api/skeleton":
            self._answer(self.app.skeleton, params.get("row"))
        elif url.path == "/api/texts":
            self._answer(self.app.texts, params.get("row"), params.get("k", 5))
        elif url.path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, f"{url.path}: no such page")

    do_HEAD = do_GET

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            return self._error(413, f"request body must be at most {MAX_BODY_BYTES:,} bytes")
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object")
        if url.path == "/api/search":
            self._answer(self.app.search, body.get("query"), body.get("k", 10))
        elif url.path == "/api/timeline":
            self._answer(self.app.timeline, body.get("source"), body.get("query"))
        else:
            self._error(404, f"{url.path}: no such endpoint")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def make_server(app: "SearchApp | None", host: str = "127.0.0.1", port: int = 0) -> Server:
    """An HTTP server for `app` bound to host:port (port 0: a free one); not yet serving.

    `app` may be set later (`server.RequestHandlerClass.app = ...`): the CLI binds the
    port first, so a port in use is said before the run is loaded.
    """
    handler = type("BoundHandler", (Handler,), {"app": app})
    try:
        return (Server6 if ":" in host else Server)((host, port), handler)
    except OSError as e:  # socket.gaierror (an unknown host name) is one too
        if e.errno == errno.EADDRINUSE:
            problem = f"{host}:{port} is in use; pick another (--port=0 picks a free one)"
            raise fail("--port", problem) from None
        if e.errno in (errno.EACCES, errno.EPERM):
            problem = f"{host}:{port} is not allowed ({e.strerror}); use a port above 1023"
            raise fail("--port", problem) from None
        raise fail("--host", f"cannot listen on {host}:{port} ({e.strerror or e})") from None


@exits_on_input_error
def main(argv):
    from absl import flags

    from wat_jax.reporting.run_log import console_logs

    FLAGS = flags.FLAGS
    console_logs()
    if len(argv) > 1:
        raise fail("wat_jax.tools.app", f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise fail("--workdir", "required: a trained run's workdir")
    check_int("--port", FLAGS.port, 0, 65535)
    if not os.path.isdir(FLAGS.workdir):
        raise fail("--workdir", f"{FLAGS.workdir}: no such folder; give a trained run's workdir")
    server = make_server(None, FLAGS.host, FLAGS.port)
    try:
        app = SearchApp(FLAGS.workdir, FLAGS.split, FLAGS.step if FLAGS.step >= 0 else None)
    except BaseException:
        server.server_close()
        raise
    server.RequestHandlerClass.app = app
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    if FLAGS.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"note: listening on {FLAGS.host}: anyone who reaches this machine can query the run",
            file=sys.stderr,
        )
    print(
        f"serving {app.workdir} ({app.run.config.task}, step {app.run.step}, "
        f"{len(app.split['index'])} {app.split_name} windows) at http://{host}:{port}/ "
        "(Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("workdir", "", "A trained run's workdir (config.json, checkpoints, data).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (default: this machine only).")
    flags.DEFINE_integer("port", 8765, "Port to listen on; 0 picks a free one.")
    flags.DEFINE_enum("split", "val", ["train", "val"], "The gallery split.")
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")


def run() -> None:
    """The command line (also the `wat-jax-app` console script)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
