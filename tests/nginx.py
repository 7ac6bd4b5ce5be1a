"""A real nginx reverse proxy for the tests, on 127.0.0.1, with everything in one temporary folder.

The configuration is the one a user would write for llama-server (and that llama.cpp's streaming
fix, PR #24774 "X-Accel-Buffering: no", assumes): HTTP/1.1 to the upstream with keep-alive
(`Connection ""`), response buffering off so that each event is passed on as it arrives, and
read timeouts long enough for slow generations. Each location strips its path prefix, so clients
use a `base_url` such as `http://127.0.0.1:<port>/llama`.

nginx runs in the foreground as one process (`daemon off; master_process off;`) started with
`nginx -p <folder> -c <folder>/nginx.conf -e <folder>/error.log`, so it needs no root, no system
folders and no system service; it is stopped by its PID. Its access log records, for each request,
the path, the status sent, the upstream that served it and the upstream's status.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time
from typing import Callable, Mapping, Optional

from llamacpp_lite.server import stop_process

__all__ = ["Nginx", "find_nginx", "free_port"]

_START_TIMEOUT_S = 10.0

LOCATION = """\
        location /{prefix}/ {{
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
"""

CONFIG = """\
daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '$request_uri|$status|$upstream_addr|$upstream_status';
    access_log {folder}/access.log upstreams;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{upstreams}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""


def find_nginx() -> Optional[str]:
    """Return the nginx binary (PATH, then Debian's /usr/sbin/nginx), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """One nginx process proxying path prefixes to groups of upstream servers.

    Args:
        binary: The nginx binary.
        folder: An empty folder for the configuration, logs, PID file and temporary files.
        routes: `{prefix: ["127.0.0.1:port", ...]}`: `/prefix/...` goes to those servers,
            round-robin, with the prefix stripped.
    """

    def __init__(self, binary: str, folder: pathlib.Path, routes: Mapping[str, list]) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = folder / "access.log"
        self.error_log = folder / "error.log"
        upstreams = "".join(
            f"    upstream {prefix} {{\n" + "".join(f"        server {addr};\n" for addr in servers) + "    }\n"
            for prefix, servers in routes.items())
        locations = "".join(LOCATION.format(prefix=prefix, upstream=prefix) for prefix in routes)
        self.config = folder / "nginx.conf"
        self.config.write_text(CONFIG.format(folder=folder, port=self.port, upstreams=upstreams, locations=locations))
        self._process: Optional[subprocess.Popen] = None

    def start(self) -> "Nginx":
        """Start nginx and wait until it accepts connections.

        Raises:
            RuntimeError: When it exits or does not listen in time (with its error log).
        """
        self._process = subprocess.Popen(
            [self.binary, "-p", str(self.folder), "-c", str(self.config), "-e", str(self.error_log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self._process.returncode}:\n{self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not listen within {_START_TIMEOUT_S} s:\n{self.errors()}")

    def stop(self) -> None:
        """Stop nginx by its PID (fast shutdown, then kill). Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def errors(self) -> str:
        """The end of nginx's error log."""
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no error log)"

    def requests(self) -> list:
        """The access log so far: `(path, status, upstream addresses, upstream statuses)` per request.

        nginx writes the line when a request ends; retries to another upstream show as
        comma-separated addresses and statuses.
        """
        if not self.access_log.exists():
            return []
        rows = []
        for line in self.access_log.read_text().splitlines():
            path, status, upstream, upstream_status = (line.split("|", 3) + ["-", "-"])[:4]
            rows.append((path, int(status), upstream, upstream_status))
        return rows

    def requests_until(self, done: Callable[[list], bool], timeout: float = 10.0) -> list:
        """`requests()` once `done(rows)` is true, or as they are after `timeout` seconds.

        nginx writes a request's line when the request ends, which may be just after the client
        has read the last event of a stream.
        """
        deadline = time.monotonic() + timeout
        rows = self.requests()
        while not done(rows) and time.monotonic() < deadline:
            time.sleep(0.02)
            rows = self.requests()
        return rows
