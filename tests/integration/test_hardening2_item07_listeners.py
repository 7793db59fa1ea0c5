"""Issue 19, item 7: every server of the local stack listens on loopback only, RabbitMQ's
Erlang distribution port and epmd included."""

from __future__ import annotations

import ipaddress
from pathlib import Path

# PostgreSQL, Redis (limiter, cache), RabbitMQ (AMQP, management, epmd, distribution), FerretDB
INFRA_PORTS = {5432: "postgres", 6379: "redis", 6380: "redis-cache", 5672: "rabbitmq",
               15672: "rabbitmq management", 4369: "epmd", 25672: "rabbitmq distribution",
               27017: "ferretdb"}
LISTEN = "0A"


def listeners() -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every listening TCP socket of this network namespace."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.append((ipaddress.ip_address(raw), int(hex_port, 16)))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_item_07_infrastructure_listens_on_loopback_only(broker_vhost: str):
    bound = [(address, port) for address, port in listeners() if port in INFRA_PORTS]
    assert {port for _, port in bound} >= {5672, 4369, 25672}, bound  # the broker is up
    exposed = [f"{INFRA_PORTS[port]} on {address}:{port}" for address, port in bound
               if not is_loopback(address)]
    assert not exposed, exposed
