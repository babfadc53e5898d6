"""Downloads from a real HTTP server on loopback: resume with Range and If-Range, limits, policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.download import download
from agent.errors import DownloadInterrupted, ReleaseError

DATA = os.urandom(300_000)


@pytest.fixture
def served(file_server) -> str:
    (file_server.directory / "bundle.tar.gz").write_bytes(DATA)
    return file_server.url("bundle.tar.gz")


def test_whole_download(file_server, served: str, tmp_path: Path) -> None:
    """A download lands complete under its name, with no .part left."""
    target = tmp_path / "dl" / "bundle.tar.gz"
    assert download(served, target, timeout=10, max_size=10**6) == len(DATA)
    assert target.read_bytes() == DATA
    assert sorted(p.name for p in target.parent.iterdir()) == ["bundle.tar.gz"]


def test_cut_download_resumes_with_range(file_server, served: str, tmp_path: Path) -> None:
    """A connection cut mid-file keeps what arrived; the next attempt asks for the rest (Range, If-Range)."""
    target = tmp_path / "bundle.tar.gz"
    file_server.cut_next = 100_000
    with pytest.raises(DownloadInterrupted, match="resumes on the next attempt"):
        download(served, target, timeout=10, max_size=10**6)
    assert not target.exists()
    download(served, target, timeout=10, max_size=10**6)
    assert target.read_bytes() == DATA
    (_, first_range, _, first_status), (_, second_range, if_range, second_status) = file_server.log
    assert (first_range, first_status) == (None, 200)
    assert (second_range, second_status) == ("bytes=100000-", 206)
    assert if_range and if_range.startswith('"')


def test_changed_file_starts_over(file_server, served: str, tmp_path: Path) -> None:
    """If the file changed since the cut (a new ETag), the server sends it whole and the download restarts."""
    target = tmp_path / "bundle.tar.gz"
    file_server.cut_next = 50_000
    with pytest.raises(DownloadInterrupted):
        download(served, target, timeout=10, max_size=10**6)
    replaced = os.urandom(200_000)
    (file_server.directory / "bundle.tar.gz").write_bytes(replaced)
    download(served, target, timeout=10, max_size=10**6)
    assert target.read_bytes() == replaced
    assert file_server.log[-1][3] == 200


def test_size_cap(served: str, tmp_path: Path) -> None:
    """A bundle larger than the cap is refused before it fills the disk."""
    with pytest.raises(ReleaseError, match=r"more than update\.max_download_size"):
        download(served, tmp_path / "b", timeout=10, max_size=1000)


def test_missing_file(file_server, tmp_path: Path) -> None:
    """HTTP errors name the status; they are not retried as interruptions."""
    with pytest.raises(ReleaseError, match="HTTP 404") as caught:
        download(file_server.url("nothing.tar.gz"), tmp_path / "b", timeout=10, max_size=1000)
    assert not isinstance(caught.value, DownloadInterrupted)


@pytest.mark.parametrize(("url", "allow_http", "reason"), [
    ("http://127.0.0.1:1/x", False, "policy refuses plain http"),
    ("ftp://example.org/x", True, "must be http or https"),
    ("file:///etc/shadow", True, "must be http or https"),
])
def test_url_policy(tmp_path: Path, url: str, allow_http: bool, reason: str) -> None:
    """Only http(s) URLs are fetched, and plain http only where policy allows it."""
    with pytest.raises(ReleaseError, match=reason):
        download(url, tmp_path / "b", timeout=10, max_size=1000, allow_http=allow_http)


def test_messages_hide_credentials(tmp_path: Path) -> None:
    """URLs in messages lose their user, password and query (which can carry tokens)."""
    with pytest.raises(DownloadInterrupted) as caught:
        download("http://user:pw@127.0.0.1:1/x.tar.gz?token=abc", tmp_path / "b", timeout=5, max_size=1000)
    assert "pw" not in str(caught.value) and "token" not in str(caught.value)
    assert "http://127.0.0.1:1/x.tar.gz" in str(caught.value)
