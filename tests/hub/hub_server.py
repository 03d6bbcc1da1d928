"""A Hugging Face Hub stand-in on 127.0.0.1 for the pretrained-weights tests (no internet).

Serves the Hub's URL layout ``/{repo_id}/resolve/{revision}/{filename}`` (``revision`` = ``main`` or the
repo's commit) the way the Hub serves an LFS file: ``HEAD``/``GET`` answer ``302`` to an absolute
"CDN" URL with ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``; the CDN URL
serves the bytes (``Content-Length``, ``ETag``, ``Range: bytes=N-``). ``mode`` per repository
simulates failures:

* ``ok``        the file as registered;
* ``direct``    no redirect: ``200`` at the resolve URL with ``ETag`` = sha256 and ``Content-Length``
                (as some mirrors serve it);
* ``404``       ``404`` with ``X-Error-Code: EntryNotFound``;
* ``truncate``  the body stops half-way and the connection is closed (``Content-Length`` promises more;
                a ``Range`` resume gets the same treatment);
* ``truncate_ignore_range``  every body stops half-way and ``Range`` is ignored (``200`` with the whole
                file announced each time): a resume never gets further (a broken mirror);
* ``short``     a complete response of half the bytes (``Content-Length`` = half) while the metadata
                announces the full size;
* ``bad_sha``   one byte of the body flipped, metadata of the original file (a wrong / corrupted file).

The Hub and the CDN listen on two ephemeral ports (two origins), each in a daemon thread; ``stop()`` shuts it down. Every request is logged
in ``requests`` as ``(method, path)``.
"""
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple


class HubServer:
    def __init__(self):
        self.files: Dict[str, dict] = {}
        self.requests: List[Tuple[str, str]] = []
        self._lock = threading.Lock()
        self._connections = set()  # open client sockets, closed by stop() (keep-alive would outlive it)
        # two listeners: the Hub and its "CDN" (another origin, like the real Hub's LFS storage), so that
        # clients take the file metadata from the redirect response instead of following it
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self)) for _ in range(2)]
        self._server, self._cdn = self._servers
        self._threads = []
        self.running = True
        for server in self._servers:
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, data: bytes, filename: str = "model.safetensors", mode: str = "ok",
            commit: str = None) -> dict:
        sha = hashlib.sha256(data).hexdigest()
        entry = dict(data=data, sha256=sha, filename=filename, mode=mode,
                     commit=commit or hashlib.sha1(sha.encode()).hexdigest())
        self.files[repo_id] = entry
        return entry

    def stop(self) -> None:
        """Stop listening and drop every open connection: a client's pooled keep-alive connection
        must not reach a handler that is still alive after the "Hub" went away."""
        if self.running:
            for server, thread in zip(self._servers, self._threads):
                server.shutdown()
                server.server_close()
                thread.join(timeout=10)
            with self._lock:
                self.running = False
                connections, self._connections = list(self._connections), set()
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()

    def _track(self, conn) -> bool:
        with self._lock:
            if self.running:
                self._connections.add(conn)
            return self.running

    def _untrack(self, conn) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _log(self, method, path):
        with self._lock:
            self.requests.append((method, path))


def _handler_for(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def setup(self):
            super().setup()
            if not hub._track(self.connection):  # accepted just as the server stopped
                self.close_connection = True

        def finish(self):
            hub._untrack(self.connection)
            super().finish()

        def handle_one_request(self):
            if not hub.running:  # a request on a connection that outlived stop(): refuse it unserved
                self.close_connection = True
                return
            super().handle_one_request()

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        # ------------------------------------------------------------------
        def _send(self, status, headers, body=b"", head=False, limit=None):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.end_headers()
            if not head and body:
                self.wfile.write(body if limit is None else body[:limit])
                self.wfile.flush()
            if limit is not None:
                self.close_connection = True

        def _serve(self, head):
            hub._log(self.command, self.path)
            path = self.path.split("?", 1)[0]
            if path.startswith("/cdn/"):
                return self._cdn(path[len("/cdn/"):], head)
            if "/resolve/" not in path:
                return self._send(404, {"Content-Length": 0}, head=head)
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            entry = hub.files.get(repo_id)
            if entry is None or entry["mode"] == "404" or filename != entry["filename"] \
                    or revision not in ("main", entry["commit"]):
                msg = b"Entry not found"
                return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                                        "Content-Length": len(msg)}, msg, head)
            common = {"X-Repo-Commit": entry["commit"], "Accept-Ranges": "bytes"}
            if entry["mode"] == "direct":
                return self._send(200, {**common, "ETag": f'"{entry["sha256"]}"',
                                        "Content-Length": len(entry["data"])}, entry["data"], head)
            host, port = hub._cdn.server_address[:2]
            location = f"http://{host}:{port}/cdn/{repo_id.replace('/', '--')}"
            return self._send(302, {**common, "Location": location, "X-Linked-Etag": f'"{entry["sha256"]}"',
                                    "X-Linked-Size": len(entry["data"]), "ETag": '"0123abcd"',
                                    "Content-Length": 0}, head=head)

        def _cdn(self, key, head):
            entry = hub.files.get(key.replace("--", "/"))
            if entry is None:
                return self._send(404, {"Content-Length": 0}, head=head)
            data, mode = entry["data"], entry["mode"]
            if mode == "bad_sha":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            elif mode == "short":
                data = data[: len(data) // 2]
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit() and mode != "truncate_ignore_range":
                start = int(rng[6:].split("-")[0])
            body = data[start:]
            headers = {"ETag": f'"{entry["sha256"]}"', "Accept-Ranges": "bytes", "Content-Length": len(body)}
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            limit = max(1, len(body) // 2) if mode in ("truncate", "truncate_ignore_range") else None
            self._send(status, headers, body, head, limit=limit)

    return Handler
