"""A real HTTP server on loopback that serves files with ETag, Range and If-Range, and can cut a response."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory
        #: Cut the next response after this many bytes of body (a dropped connection).
        self.cut_next: int | None = None
        #: Seconds to pause after each 256 KiB sent (a slow link), so a test can act mid-transfer.
        self.pause = 0.0
        #: (path, Range, If-Range, status) of every request.
        self.log: list[tuple[str, str | None, str | None, int]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        path = self.server.directory / self.path.lstrip("/")
        ranged, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if not path.is_file() or path.parent != self.server.directory:
            self._log(ranged, if_range, 404)
            self.send_error(404)
            return
        data = path.read_bytes()
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        start, status = 0, 200
        found = re.fullmatch(r"bytes=(\d+)-", ranged or "")
        if found and (if_range is None or if_range == etag) and int(found.group(1)) < len(data):
            start, status = int(found.group(1)), 206
        body = data[start:]
        self._log(ranged, if_range, status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut, self.server.cut_next = self.server.cut_next, None
        sent = body if cut is None else body[:cut]
        step = 256 * 1024
        try:
            for offset in range(0, len(sent), step):
                self.wfile.write(sent[offset:offset + step])
                if self.server.pause:
                    time.sleep(self.server.pause)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away (killed mid-transfer)
        if cut is not None:
            self.close_connection = True

    def _log(self, ranged: str | None, if_range: str | None, status: int) -> None:
        self.server.log.append((self.path, ranged, if_range, status))

    def log_message(self, format: str, *args: Any) -> None:
        pass
