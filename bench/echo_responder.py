"""The floor: a bare responder written with pyxs, no journal, same reply protocol (read, write, delete)."""

from __future__ import annotations

import json
import sys

import pyxs


def main(socket_path: str, domain: str) -> None:
    reply = json.dumps({"returncode": "0", "message": "echo"}).encode()
    host = f"{domain}/data/host".encode()
    with pyxs.Client(unix_socket_path=socket_path) as client:
        monitor = client.monitor()
        monitor.watch(host, b"echo")
        for path, _token in monitor.wait():
            if path == host:
                continue
            request_id = path.rsplit(b"/", 1)[1]
            if client.read(path, b"") == b"":
                continue
            client.write(f"{domain}/data/guest/".encode() + request_id, reply)
            client.delete(path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
