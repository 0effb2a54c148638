"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the describe tests.

Each POST to /v1/chat/completions takes the next behaviour from `script`
(then `default`): "ok", "500", ("429", retry_after_s), "malformed",
("timeout", sleep_s) (answers only after the client gave up), "not_chat",
"model_404", "refusal", "same" (the same text for every choice), "chatty"
(the text wrapped in chat artefacts). `ignore_n` answers one choice whatever
`n` asks; `hang_after=N` makes every request after the N-th wait until
`release()`. `models` (a list of ids) answers GET /v1/models with that list; None
answers it 404, as servers without the endpoint do. Every chat request is logged
(body fields, behaviour, arrival time); GETs go to `gets`.
Not a test module: pytest collects only test_*.py.
"""

import hashlib
import http.server
import json
import threading
import time


def sample_text(content: str, seed: int, choice: int) -> str:
    """A deterministic, unique-per-(prompt, seed, choice) description."""
    tag = hashlib.sha256(f"{content}|{seed}|{choice}".encode()).hexdigest()[:10]
    return (
        f"A person shifts their weight onto the left leg and swings the right arm forward "
        f"in a smooth motion, variant {tag}."
    )


class FakeLLMServer:
    def __init__(self, script=(), default="ok", ignore_n=False, hang_after=None, models=None):
        self.script, self.default = list(script), default
        self.ignore_n, self.hang_after = ignore_n, hang_after
        self.models = models
        self.log: list[dict] = []
        self.gets: list[str] = []
        self.lock = threading.Lock()
        self._released = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                server._handle(self)

            def do_GET(self):
                server._get(self)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False  # hung handlers must not block close()

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def release(self) -> None:
        """Lets hung requests go (they answer 503) and stops hanging new ones."""
        self.hang_after = None
        self._released.set()

    def _next(self, handler, body) -> tuple[str, object, int]:
        with self.lock:
            behaviour = self.script.pop(0) if self.script else self.default
            number = len(self.log)
            self.log.append(
                {
                    "path": handler.path,
                    "seed": body.get("seed"),
                    "n": body.get("n"),
                    "model": body.get("model"),
                    "content": body["messages"][-1]["content"],
                    "auth": handler.headers.get("Authorization"),
                    "behaviour": behaviour,
                    "time": time.monotonic(),
                }
            )
        name, arg = behaviour if isinstance(behaviour, tuple) else (behaviour, None)
        return name, arg, number

    def _send(self, handler, code: int, payload: bytes, headers=()) -> None:
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for k, v in headers:
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def _get(self, handler) -> None:
        with self.lock:
            self.gets.append(handler.path)
        if handler.path.rstrip("/") != "/v1/models" or self.models is None:
            return self._send(handler, 404, b'{"error": {"message": "not found"}}')
        data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models]
        self._send(handler, 200, json.dumps({"object": "list", "data": data}).encode())

    def _handle(self, handler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        name, arg, number = self._next(handler, body)
        if self.hang_after is not None and number >= self.hang_after:
            self._released.wait(60)
            return self._send(handler, 503, b'{"error": {"message": "released"}}')
        if name == "500":
            return self._send(handler, 500, b'{"error": {"message": "internal error"}}')
        if name == "429":
            return self._send(
                handler, 429, b'{"error": {"message": "slow down"}}', [("Retry-After", str(arg))]
            )
        if name == "malformed":
            return self._send(handler, 200, b'{"choices": [{"message": ')
        if name == "not_chat":
            return self._send(
                handler,
                400,
                json.dumps(
                    {
                        "error": {
                            "message": (f"{body['model']} is not a chat model; use /v1/completions")
                        }
                    }
                ).encode(),
            )
        if name == "model_404":
            return self._send(
                handler,
                404,
                json.dumps(
                    {"error": {"message": (f"The model `{body['model']}` does not exist.")}}
                ).encode(),
            )
        if name == "timeout":
            time.sleep(arg)
        n = 1 if self.ignore_n else int(body.get("n", 1))
        content, seed = body["messages"][-1]["content"], body.get("seed", 0)
        texts = [sample_text(content, seed, j) for j in range(n)]
        if name == "refusal":
            texts = ["I'm sorry, but as an AI I cannot describe that."] * n
        elif name == "same":
            texts = ["A person walks forward with even steps and relaxed arms."] * n
        elif name == "chatty":
            texts = [
                f'Sure! Here is a detailed description:\n\n"{t}"\n\nI hope this helps!'
                for t in texts
            ]
        choices = [
            {"index": j, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for j, t in enumerate(texts)
        ]
        self._send(
            handler,
            200,
            json.dumps(
                {"object": "chat.completion", "model": body["model"], "choices": choices}
            ).encode(),
        )
