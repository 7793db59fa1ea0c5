"""AMQP_URL as a list of cluster nodes: parsing, and the order and waits of (re)connects."""

from __future__ import annotations

import random

import pytest

from contracts import amqp
from contracts.amqp import NodeRotation, broker_urls

A = "amqp://guest:guest@127.0.0.1:5681/v"
B = "amqp://guest:guest@127.0.0.1:5682/v"
C = "amqp://guest:guest@127.0.0.1:5683/v"


def test_one_url_is_a_list_of_one() -> None:
    assert broker_urls("amqp://guest:guest@127.0.0.1:5672/") == [
        "amqp://guest:guest@127.0.0.1:5672/"]


def test_a_comma_separated_list_names_every_node_in_order() -> None:
    assert broker_urls(f" {A}, {B},{C} ,") == [A, B, C]
    assert broker_urls("amqps://u:p@mq.example:5671/prod") == ["amqps://u:p@mq.example:5671/prod"]


@pytest.mark.parametrize("value", ["", " , ", "127.0.0.1:5672", f"{A},127.0.0.1:5682",
                                   "http://127.0.0.1:5672/", "amqp://u:pa,ss@h/"])
def test_what_is_not_a_list_of_amqp_urls_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="AMQP_URL"):
        broker_urls(value)


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        broker_urls("http://user:secret@h:5672/")
    assert "secret" not in str(refused.value)


def test_a_comma_in_a_password_is_written_percent_encoded() -> None:
    assert broker_urls("amqp://u:pa%2Css@h/,amqp://u:pa%2Css@g/") == [
        "amqp://u:pa%2Css@h/", "amqp://u:pa%2Css@g/"]


def test_each_process_starts_on_a_node_of_its_own_shuffled_order() -> None:
    random.seed(7)
    first_nodes = {NodeRotation([A, B, C]).current for _ in range(60)}
    assert first_nodes == {A, B, C}  # processes spread over the nodes
    assert NodeRotation([A, B, C], shuffle=False).current == A


def test_a_failed_node_gives_way_to_the_next_at_once_and_a_failed_round_backs_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amqp.random, "uniform", lambda low, high: 1.0)  # no jitter
    rotation = NodeRotation([A, B, C], shuffle=False)
    tried = [rotation.current]
    waits = []
    for _ in range(9):
        waits.append(rotation.failed(1.0))
        tried.append(rotation.current)
    assert tried == [A, B, C] * 3 + [A]
    next_node = amqp.NEXT_NODE_DELAY_S
    assert waits == [next_node, next_node, 1.0, next_node, next_node, 2.0,
                     next_node, next_node, 4.0]
    for _ in range(6):
        last = rotation.failed(1.0)
    assert last == amqp.MAX_ROUND_DELAY_S  # capped
    # a connection made resets the back-off; the next failure moves on to the next node
    rotation.connected()
    assert rotation.failed(1.0) == next_node


def test_one_node_is_retried_with_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amqp.random, "uniform", lambda low, high: 1.0)
    rotation = NodeRotation([A])
    assert [rotation.failed(0.2) for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert rotation.current == A


def test_aio_pika_still_reconnects_the_way_cluster_connection_relies_on() -> None:
    """ClusterConnection changes `url` and `reconnect_interval` in `_on_connection_close`,
    which aio-pika calls when a connection drops and when an attempt fails, and reads for
    every attempt; `connection_attempt` counts the connections made."""
    import inspect

    import aio_pika
    from aio_pika.abc import UnderlayConnection
    from aio_pika.connection import Connection
    from aio_pika.robust_connection import RobustConnection

    changed = f"aio-pika {aio_pika.__version__} changed: adapt contracts/amqp.py ClusterConnection"
    assert "self.url" in inspect.getsource(Connection.connect), changed
    assert "close_callback(closing)" in inspect.getsource(UnderlayConnection.connect), changed
    factory = inspect.getsource(RobustConnection)
    assert "await asyncio.sleep(self.reconnect_interval)" in factory, changed
    assert "self.connection_attempt += 1" in inspect.getsource(RobustConnection._on_connected)
    assert "_on_connection_close" in vars(RobustConnection), changed
