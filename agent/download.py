"""Downloading a release bundle over http or https: bounded in time and size, resumable after a restart.

Bytes go to ``<name>.part``; the response's validator (ETag, else Last-Modified) goes beside it in
``<name>.part.json``. After a restart the download asks for the rest with ``Range`` and ``If-Range``: a
server that still has the same file answers 206 and the download continues; one whose file changed
answers 200 with the whole new file, and the download starts over. Only a finished download is renamed to
``<name>``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import DownloadInterrupted, ReleaseError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def url_for_log(url: str) -> str:
    """The URL without credentials or query (which can carry tokens), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str, allow_http: bool) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("http", "https") or not parts.hostname:
        raise ReleaseError(f"the update URL must be http or https with a host, not {url_for_log(url)!r}")
    if scheme == "http" and not allow_http:
        raise ReleaseError("policy refuses plain http downloads (update.allow_http = false); serve the "
                           "release over https")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never from https down to http when policy refuses http."""

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_url(newurl, self.allow_http)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, destination: Path, timeout: float, max_size: int, allow_http: bool = True) -> int:
    """Fetch ``url`` to ``destination``, resuming a partial download; return the file's size."""
    check_url(url, allow_http)
    if destination.exists():
        return destination.stat().st_size
    part = destination.with_name(destination.name + ".part")
    meta = destination.with_name(destination.name + ".part.json")
    destination.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    validator = _load(meta).get("validator") if offset else None
    headers = {"User-Agent": "openstack-agent"}
    if offset and validator:
        headers.update({"Range": f"bytes={offset}-", "If-Range": validator})
    opener = urllib.request.build_opener(_Redirects(allow_http))
    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - check_url allowed http(s) only
        with opener.open(request, timeout=timeout) as response:
            if response.status == 206 and "Range" in headers:
                _check_range(response.headers.get("Content-Range", ""), offset)
                log.info("resuming the download of %s at byte %d", url_for_log(url), offset)
            else:
                offset = 0
                found = response.headers.get("ETag") or response.headers.get("Last-Modified")
                meta.write_text(json.dumps({"validator": found}))
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and offset + int(length) > max_size:
                raise ReleaseError(f"the release at {url_for_log(url)} is {offset + int(length)} bytes, more than "
                                   f"update.max_download_size ({max_size})")
            size = _copy(response, part, offset, max_size, url)
    except urllib.error.HTTPError as exc:
        raise ReleaseError(f"downloading {url_for_log(url)} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadInterrupted(f"downloading {url_for_log(url)} failed: {exc.reason}") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise DownloadInterrupted(f"downloading {url_for_log(url)} stopped ({type(exc).__name__}: {exc}); it "
                                  "resumes on the next attempt") from None
    os.replace(part, destination)
    meta.unlink(missing_ok=True)
    return size


def _load(meta: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _check_range(content_range: str, offset: int) -> None:
    found = _CONTENT_RANGE.fullmatch(content_range.strip())
    if found is None or int(found.group(1)) != offset:
        raise ReleaseError(f"the server resumed at the wrong place ({content_range!r}, expected byte {offset})")


def _copy(response: Any, part: Path, offset: int, max_size: int, url: str) -> int:
    size = offset
    with part.open("ab" if offset else "wb") as out:
        while block := response.read(CHUNK):
            size += len(block)
            if size > max_size:
                raise ReleaseError(f"the release at {url_for_log(url)} exceeds update.max_download_size "
                                   f"({max_size} bytes)")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and size - offset != int(length):
        raise DownloadInterrupted(f"the download of {url_for_log(url)} ended after {size} bytes, short of the "
                                  f"{offset + int(length)} announced; it resumes on the next attempt")
    return size
