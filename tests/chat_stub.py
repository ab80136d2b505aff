"""A small OpenAI-compatible chat endpoint on 127.0.0.1 for tests (http.server in a thread).

`StubChat(reply)` serves POST /v1/chat/completions; `reply(body) -> (status, text)` decides each answer
from the request body; `delay_s` makes the next N requests sleep (timeout tests).  Every request's
body and Authorization header are recorded.

It also plays the Batch API: POST /v1/files (multipart upload), POST /v1/batches, GET /v1/batches/<id>
(status "in_progress" for the first `batch_polls_pending` polls, then "completed"), GET
/v1/files/<id>/content (one output row per request, each answered by `reply`).
"""
from __future__ import annotations

import email.parser
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
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_pending = 1
        self.paths: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def do_GET(self) -> None:  # noqa: N802
                stub.paths.append("GET " + self.path)
                stub.auth_headers.append(self.headers.get("Authorization"))
                parts = self.path.strip("/").split("/")
                if parts[-2:-1] == ["batches"] and parts[-1] in stub.batches:
                    self._send(200, json.dumps(stub.batch_status(parts[-1])))
                elif parts[-1] == "content" and parts[-2] in stub.files:
                    self._send(200, stub.files[parts[-2]].decode())
                else:
                    self._send(404, '{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stub.paths.append("POST " + self.path)
                if self.path.endswith("/files"):
                    stub.auth_headers.append(self.headers.get("Authorization"))
                    msg = email.parser.BytesParser().parsebytes(
                        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                    content = next(p.get_payload(decode=True) for p in msg.get_payload()
                                   if p.get_param("name", header="content-disposition") == "file")
                    fid = f"file-{len(stub.files)}"
                    stub.files[fid] = content
                    self._send(200, json.dumps({"id": fid, "object": "file", "bytes": len(content), "created_at": 0,
                                                "filename": "batch.jsonl", "purpose": "batch", "status": "processed"}))
                    return
                if self.path.endswith("/batches"):
                    stub.auth_headers.append(self.headers.get("Authorization"))
                    body = json.loads(raw)
                    bid = f"batch-{len(stub.batches)}"
                    stub.batches[bid] = {"input": body["input_file_id"], "polls": 0, "output": None}
                    self._send(200, json.dumps(stub.batch_status(bid, poll=False)))
                    return
                body = json.loads(raw)
                stub.requests.append(body)
                stub.auth_headers.append(self.headers.get("Authorization"))
                if stub.slow_next > 0:
                    stub.slow_next -= 1
                    time.sleep(stub.delay_s)
                status, text = stub.reply(body) if self.path.endswith("/chat/completions") else (404, "not found")
                self._send(status, text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def batch_status(self, bid: str, poll: bool = True) -> dict[str, Any]:
        b = self.batches[bid]
        if poll:
            b["polls"] += 1
        done = b["polls"] > self.batch_polls_pending
        if done and b["output"] is None:  # answer every request of the input file through `reply`
            rows = []
            for line in self.files[b["input"]].decode().splitlines():
                req = json.loads(line)
                self.requests.append(req["body"])
                status, text = self.reply(req["body"])
                rows.append({"id": f"r-{len(rows)}", "custom_id": req["custom_id"], "error": None,
                             "response": {"status_code": status, "request_id": "x",
                                          "body": json.loads(text) if status == 200 else {"error": text}}})
            fid = f"file-{len(self.files)}"
            self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
            b["output"] = fid
        return {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "completion_window": "24h",
                "input_file_id": b["input"], "created_at": 0, "status": "completed" if done else "in_progress",
                "output_file_id": b["output"] if done else None, "error_file_id": None}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "StubChat":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
