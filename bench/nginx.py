"""The ceiling row (issue 28): nginx (Debian package) as a plain reverse proxy to the bench's
upstream, one worker process, keep-alive connections to the upstream, no access log: what a
proxy in C does on the same core, beside the Python ones."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

CONFIG = """\
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    upstream bench_upstream {{
        server {upstream_host_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def binary() -> str | None:
    """nginx's path, or None where it is not installed (`make bench` installs it)."""
    # Debian's path, also where /usr/sbin is not on PATH
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)


def command(port: int, upstream_host_port: str) -> list[str]:
    """The command line that serves `port` (a configuration in a directory of its own)."""
    nginx = binary()
    if nginx is None:
        raise RuntimeError("nginx is missing (Debian package nginx)")
    home = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    config = home / "nginx.conf"
    config.write_text(CONFIG.format(home=home, port=port, upstream_host_port=upstream_host_port))
    return [nginx, "-p", str(home), "-c", str(config)]
