"""A small OpenAI-compatible chat endpoint on 127.0.0.1 for tests (http.server in a thread).

`StubChat(reply)` serves POST /v1/chat/completions; `reply(body) -> (status, text)` decides each answer
from the request body; `delay_s` makes the next N requests sleep (timeout tests).  Every request's
body and Authorization header are recorded.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def completion(content: str) -> str:
    return json.dumps({"id": "stub", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]})


class StubChat:
    def __init__(self, reply: Callable[[dict[str, Any]], tuple[int, str]]):
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.slow_next = 0  # the next N requests sleep delay_s before answering
        self.delay_s = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.auth_headers.append(self.headers.get("Authorization"))
                if stub.slow_next > 0:
                    stub.slow_next -= 1
                    time.sleep(stub.delay_s)
                status, text = stub.reply(body) if self.path.endswith("/chat/completions") else (404, "not found")
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "StubChat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
