"""The route table and the services' `@handles` methods bind the same operation objects; the
binding decodes a call into its declared types and writes exactly the declared answer."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest
from pydantic import ValidationError as PydanticError

from contracts import operations as op
from contracts.errors import ValidationError
from contracts.messages import RpcRequest
from contracts.names import Service
from contracts.operations import Call, Operation, Redirect
from contracts.routes import ROUTES
from contracts.rpc import Reply, declared_operations, handles, operations_of
from contracts.schemas.common import IdParams, Message

# Where each service's operations are declared: (module, class) pairs.
HANDLER_CLASSES: dict[Service, tuple[tuple[str, str], ...]] = {
    Service.AUTH: (("auth_svc.handlers", "AuthHandlers"),
                   ("auth_svc.oauth_handlers", "OAuthHandlers")),
    Service.PROJECT: (("project_svc.handlers", "ProjectHandlers"),
                      ("project_svc.webhook_handlers", "WebhookHandlers")),
    Service.LOGGING: (("logging_svc.handlers", "LogHandlers"),),
    Service.ANALYTICS: (("analytics_svc.handlers", "AnalyticsHandlers"),
                        ("analytics_svc.alert_handlers", "AlertHandlers")),
}

# Operations that a service serves to other processes, not to a public route.
INTERNAL: dict[Service, set[Operation]] = {
    Service.PROJECT: {op.ROUTE_ACTIVE_SET},  # the gateway's config snapshot
}


def handler_classes(service: Service) -> list[type]:
    return [getattr(importlib.import_module(module), name)
            for module, name in HANDLER_CLASSES[service]]


def declared(service: Service) -> dict[Operation, str]:
    """Operation -> method name over the service's handler classes (each operation once)."""
    found: dict[Operation, str] = {}
    for cls in handler_classes(service):
        operations = declared_operations(cls)
        assert not found.keys() & operations.keys(), f"{service}: declared twice"
        found.update(operations)
    return found


def routed_operations(service: Service) -> set[Operation]:
    return {route.operation for route in ROUTES if route.service is service}


def test_every_service_with_routes_has_its_handler_classes_listed_here():
    served = {route.service for route in ROUTES if route.service is not None}
    assert served == set(Service) == HANDLER_CLASSES.keys()


@pytest.mark.parametrize("service", list(Service))
def test_every_route_has_its_operation_declared(service):
    missing = sorted(o.name for o in routed_operations(service) - declared(service).keys())
    assert not missing, f"{service}: routes name operations nobody declares: {missing}"


@pytest.mark.parametrize("service", list(Service))
def test_no_operation_is_declared_that_no_route_uses(service):
    unused = sorted(o.name for o in declared(service).keys() - routed_operations(service)
                    - INTERNAL.get(service, set()))
    assert not unused, f"{service}: operations no route uses: {unused}"


def test_internal_operations_are_declared_and_not_routed():
    for service, names in INTERNAL.items():
        assert names <= declared(service).keys()
        assert not names & routed_operations(service)


def test_routes_the_gateway_answers_itself_have_its_handlers():
    from gateway.app import LOCAL_HANDLERS

    assert {route.operation for route in ROUTES if route.service is None} == \
        LOCAL_HANDLERS.keys()


def test_every_declared_operation_is_served_by_its_own_service():
    for service in HANDLER_CLASSES:
        assert all(o.service is service for o in declared(service)), service


def test_operation_names_are_unique():
    declared_ops = [v for v in vars(op).values() if isinstance(v, Operation)]
    names = [o.name for o in declared_ops if o is not op.SERVICE_HEALTH]
    assert len(names) == len(set(names))


def test_handlers_take_the_typed_call_of_their_operation_and_return_its_answer():
    """A handler's signature names its operation's types: Call[body, query, params] and the
    declared answer (a list of the body model for a batch)."""
    for service in HANDLER_CLASSES:
        for cls in handler_classes(service):
            module = importlib.import_module(cls.__module__)
            for declared_op, attribute in declared_operations(cls).items():
                method = getattr(cls, attribute)
                assert inspect.iscoroutinefunction(method), f"{declared_op} is not async"
                hints = typing.get_type_hints(method, vars(module))
                call = next(v for k, v in hints.items() if k != "return")
                body = declared_op.body
                if body is not None and declared_op.body_max_items is not None:
                    body = list[body]
                wanted = tuple(type(None) if t is None else t
                               for t in (body, declared_op.query, declared_op.params))
                assert typing.get_origin(call) is Call, declared_op
                assert typing.get_args(call) == wanted, (declared_op, typing.get_args(call))
                answer = type(None) if declared_op.answer is None else declared_op.answer
                if declared_op.redirects:  # or a 302 instead
                    answer = Redirect if declared_op.answer is None else answer | Redirect
                assert hints["return"] == answer, (declared_op, hints["return"])


# --- the binding itself ------------------------------------------------------------------------

THING_GET = Operation("thing.get", None, params=IdParams, answer=Message)
THING_DELETE = Operation("thing.delete", None, params=IdParams, status=204)
THING_LIST = Operation("thing.list", None, answer=list[Message])
ID = "0b7f3c52-54a5-4c1c-9a38-1f6a1b1d0a11"


class Base:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    @handles(THING_GET)
    async def get(self, call: Call[None, None, IdParams]) -> Message:
        return Message(message=f"{self.tag} {call.params.id}")

    @handles(THING_DELETE)
    async def delete(self, _call: Call[None, None, IdParams]) -> None:
        return None

    async def helper(self, _call: Call[None, None, None]) -> None:  # not an operation
        return None


class Derived(Base):
    @handles(THING_GET)  # overrides under the same method name: still one operation
    async def get(self, _call: Call[None, None, IdParams]) -> Message:
        return Message(message=f"derived {self.tag}")

    @handles(THING_LIST)
    async def list_things(self, _call: Call[None, None, None]) -> list[Message]:
        return [Message(message="a"), Message(message="b")]


def test_declared_operations_name_methods_without_an_instance():
    assert declared_operations(Base) == {THING_GET: "get", THING_DELETE: "delete"}
    assert declared_operations(Derived) == {THING_GET: "get", THING_DELETE: "delete",
                                            THING_LIST: "list_things"}


async def test_operations_of_decodes_the_call_and_writes_the_declared_answer():
    operations = operations_of(Base("one"))
    assert set(operations) == {"thing.get", "thing.delete"}
    reply = await operations["thing.get"](RpcRequest(params={"id": ID}))
    assert reply == Reply({"message": f"one {ID}"}, 200)
    assert await operations["thing.delete"](RpcRequest(params={"id": ID})) == Reply(None, 204)
    assert await operations_of(Base("two"))["thing.get"](RpcRequest(params={"id": ID})) == \
        Reply({"message": f"two {ID}"}, 200)


async def test_a_call_that_does_not_fit_its_types_is_a_400():
    with pytest.raises(ValidationError):
        await operations_of(Base("one"))["thing.get"](RpcRequest(params={"id": "seven"}))


async def test_an_answer_that_does_not_fit_its_type_is_refused():
    class Leaky:
        @handles(THING_GET)
        async def get(self, _call: Call[None, None, IdParams]) -> Message:
            return {"message": "m", "keyHash": "ab"}  # type: ignore[return-value]

    with pytest.raises(PydanticError):
        await operations_of(Leaky())["thing.get"](RpcRequest(params={"id": ID}))


async def test_operations_of_a_subclass_use_its_overrides():
    operations = operations_of(Derived("d"))
    assert await operations["thing.get"](RpcRequest(params={"id": ID})) == \
        Reply({"message": "derived d"}, 200)
    assert await operations["thing.list"](RpcRequest()) == \
        Reply([{"message": "a"}, {"message": "b"}], 200)


def test_the_same_operation_on_two_methods_is_refused():
    class Twice:
        @handles(THING_GET)
        async def get(self, _call: Call[None, None, IdParams]) -> None:
            return None

        @handles(THING_GET)
        async def get_again(self, _call: Call[None, None, IdParams]) -> None:
            return None

    with pytest.raises(ValueError, match=r"thing\.get"):
        declared_operations(Twice)
    with pytest.raises(ValueError, match=r"thing\.get"):
        operations_of(Twice())


def test_the_same_operation_on_a_new_method_of_a_subclass_is_refused():
    class Again(Base):
        @handles(THING_DELETE)
        async def remove(self, _call: Call[None, None, IdParams]) -> None:
            return None

    with pytest.raises(ValueError, match=r"thing\.delete"):
        declared_operations(Again)
