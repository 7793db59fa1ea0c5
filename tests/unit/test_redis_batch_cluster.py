"""gateway.redis_batch in Cluster mode against two fake nodes in this process (no Redis
server): commands go to their slot's master, MOVED is followed and remembered, ASK is
followed once with ASKING, and a lost node fails the call and makes the slot map be asked
again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import hiredis
import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.redis_batch import RedisBatcher

HALF = 8192
Handler = Callable[["FakeNode", list[bytes]], bytes]


class FakeNode:
    """Answers RESP commands with `handler`; records what it was sent, per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.seen: list[list[bytes]] = []
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = hiredis.Reader()  # a request is a RESP array of bulk strings, like a reply
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                self.seen.append(command)
                writer.write(self.handler(self, command))
            await writer.drain()


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def slots_reply(owners: list[tuple[int, int, int]]) -> bytes:
    """CLUSTER SLOTS: (first slot, last slot, master port) each."""
    parts = [b"*%d\r\n" % len(owners)]
    for first, last, port in owners:
        parts.append(b"*3\r\n:%d\r\n:%d\r\n*2\r\n%s:%d\r\n" % (first, last, bulk(b"127.0.0.1"),
                                                              port))
    return b"".join(parts)


def key_in(low: int, high: int, prefix: str) -> str:
    n = 0
    while not low <= key_slot(f"{prefix}{n}".encode()) < high:
        n += 1
    return f"{prefix}{n}"


class Topology:
    """Which port owns which half; what each node answers for GET."""

    def __init__(self) -> None:
        self.owners: list[tuple[int, int, int]] = []

    def answer(self, node: FakeNode, command: list[bytes]) -> bytes:
        name = command[0].upper()
        if name == b"CLUSTER":
            return slots_reply(self.owners)
        if name == b"ASKING":
            return b"+OK\r\n"
        key = command[1]
        slot = key_slot(key)
        if key.startswith(b"moved"):
            target = self.owners[1][2]
            if node.port != target:
                return b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, target)
        if key.startswith(b"ask"):
            target = self.owners[1][2]
            if node.port != target:
                return b"-ASK %d 127.0.0.1:%d\r\n" % (slot, target)
            if len(node.seen) < 2 or node.seen[-2] != [b"ASKING"]:
                return b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, self.owners[0][2])
        return bulk(b"from %d" % node.port)


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Topology, FakeNode, FakeNode]]:
    topology = Topology()
    a, b = FakeNode(topology.answer), FakeNode(topology.answer)
    await a.start()
    await b.start()
    topology.owners = [(0, HALF - 1, a.port), (HALF, 16383, b.port)]
    yield topology, a, b
    for node in (a, b):
        if node.server is not None and node.server.is_serving():
            await node.stop()


def batcher_for(port: int) -> RedisBatcher:
    # never connected by redis-py here: the batcher only reads its settings and start nodes
    return RedisBatcher(RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port)]),
                        role="test", timeout_s=2)


async def test_each_command_goes_to_its_slots_master(nodes) -> None:
    _, a, b = nodes
    batcher = batcher_for(a.port)
    low, high = key_in(0, HALF, "plain"), key_in(HALF, 16384, "plain")
    replies = await asyncio.gather(batcher.call("GET", low), batcher.call("GET", high),
                                   batcher.call("EVALSHA", "sha", 1, high, "arg"))
    assert replies == [b"from %d" % a.port, b"from %d" % b.port, b"from %d" % b.port]
    await batcher.close()


async def test_moved_is_followed_and_remembered(nodes) -> None:
    _, a, b = nodes
    batcher = batcher_for(a.port)
    key = key_in(0, HALF, "moved")
    assert await batcher.call("GET", key) == b"from %d" % b.port
    sent_to_a = len(a.seen)
    assert await batcher.call("GET", key) == b"from %d" % b.port
    assert len(a.seen) == sent_to_a  # the slot map now names b for that slot
    await batcher.close()


async def test_ask_is_followed_once_with_asking(nodes) -> None:
    _, a, b = nodes
    batcher = batcher_for(a.port)
    key = key_in(0, HALF, "ask")
    assert await batcher.call("GET", key) == b"from %d" % b.port
    assert [b"ASKING"] in b.seen
    await batcher.close()


async def test_a_lost_master_fails_the_call_then_its_replacement_is_found(nodes) -> None:
    topology, a, b = nodes
    batcher = batcher_for(b.port)
    key = key_in(0, HALF, "plain")
    assert await batcher.call("GET", key) == b"from %d" % a.port
    await a.stop()
    topology.owners = [(0, 16383, b.port)]  # b took a's slots over
    with pytest.raises(RedisConnectionError):  # the caller's policy decides
        await batcher.call("GET", key)
    for _ in range(100):  # the slot map is asked again in the background
        try:
            if await batcher.call("GET", key) == b"from %d" % b.port:
                break
        except RedisConnectionError:
            pass
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the batcher never found b")
    await batcher.close()
