"""The local RabbitMQ cluster of `make cluster` (infra/cluster/rabbitmq.sh) as the cluster
tests see it: its nodes, its management API, and where a queue lives."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
NODES = {"gw1": 5681, "gw2": 5682, "gw3": 5683}  # AMQP ports; management on 1xxxx
SCRIPT = Path(__file__).parents[2] / "infra" / "cluster" / "rabbitmq.sh"


def api(path: str, method: str = "GET", body: object = None, port: int = 15681) -> Any:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/api{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def cluster_running() -> bool:
    try:
        return all(len(api("/nodes", port=10000 + port)) == 3 for port in NODES.values())
    except (OSError, ValueError):
        return False


def from_any_node(path: str) -> Any:
    """What the management API of the first node that answers says (one may be stopped)."""
    for port in NODES.values():
        try:
            return api(path, port=10000 + port)
        except OSError:  # urllib's URLError included
            continue
    raise AssertionError(f"no node answers for {path}")


def leader_of(vhost: str, queue: str) -> str:
    """The node leading a quorum queue."""
    return str(from_any_node(f"/queues/{vhost}/{queue}")["leader"]).split("@")[0]


def queue_node(vhost: str, queue: str) -> str:
    """The node an exclusive (classic) queue lives on."""
    return str(from_any_node(f"/queues/{vhost}/{queue}")["node"]).split("@")[0]


def recreate_vhost(vhost: str) -> None:
    """`vhost` empty, on the cluster, with guest allowed everything."""
    try:
        api(f"/vhosts/{vhost}", "DELETE")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    api(f"/vhosts/{vhost}", "PUT", {})
    api(f"/permissions/{vhost}/guest", "PUT", {"configure": ".*", "write": ".*", "read": ".*"})


def script(*args: str) -> None:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"rabbitmq.sh {' '.join(args)}:\n{done.stdout}{done.stderr}"
