"""A local HTTP server for the weights-by-name tests: serves files the test
makes from 127.0.0.1, never the internet, and can misbehave on request.

Modes (``server.mode``):

- ``"normal"``: ``Range`` requests answered with ``206 Partial Content``;
- ``"no_ranges"``: ``Range`` ignored, the whole file sent with ``200``;
- ``"cut"``: the full ``Content-Length`` announced, half the bytes sent,
  then the connection closed (an interrupted download).

``server.requests`` records ``(path, Range header)`` of every request.
"""

import contextlib
import http.server
import threading
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - the http.server API
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = Path(server.root) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        ranged = self.headers.get("Range")
        if ranged and server.mode != "no_ranges":
            start = int(ranged.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.mode == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serving(root):
    """A server of the files in ``root`` on 127.0.0.1 (a free port); yields it
    with ``server.url(name)``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.root, server.mode, server.requests = str(root), "normal", []
    server.url = lambda name: f"http://127.0.0.1:{server.server_address[1]}/{name}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
