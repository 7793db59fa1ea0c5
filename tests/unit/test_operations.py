"""The route table and the services' `@operation` methods name the same operations."""

from __future__ import annotations

import importlib
import inspect

import pytest

from contracts.messages import RpcRequest
from contracts.names import Service
from contracts.routes import ROUTES
from contracts.rpc import declared_operations, operation, operations_of

# Where each service's operations are declared: (module, class) pairs.
HANDLER_CLASSES: dict[Service, tuple[tuple[str, str], ...]] = {
    Service.AUTH: (("auth_svc.handlers", "AuthHandlers"),),
    Service.PROJECT: (("project_svc.handlers", "ProjectHandlers"),),
    Service.LOGGING: (("logging_svc.handlers", "LogHandlers"),),
    Service.ANALYTICS: (("analytics_svc.handlers", "AnalyticsHandlers"),
                        ("analytics_svc.alert_handlers", "AlertHandlers")),
}

# Operations that a service serves to other processes, not to a public route.
INTERNAL: dict[Service, set[str]] = {
    Service.PROJECT: {"route.active_set"},  # the gateway's config snapshot
}


def handler_classes(service: Service) -> list[type]:
    return [getattr(importlib.import_module(module), name)
            for module, name in HANDLER_CLASSES[service]]


def declared(service: Service) -> dict[str, str]:
    """Operation name -> method name over the service's handler classes (each name once)."""
    found: dict[str, str] = {}
    for cls in handler_classes(service):
        operations = declared_operations(cls)
        assert not found.keys() & operations.keys(), f"{service}: declared twice"
        found.update(operations)
    return found


def routed_operations(service: Service) -> set[str]:
    return {route.operation for route in ROUTES if route.service is service}


def test_every_service_with_routes_has_its_handler_classes_listed_here():
    served = {route.service for route in ROUTES if route.service is not None}
    assert served == set(Service) == HANDLER_CLASSES.keys()


@pytest.mark.parametrize("service", list(Service))
def test_every_route_has_its_operation_declared(service):
    missing = sorted(routed_operations(service) - declared(service).keys())
    assert not missing, f"{service}: routes name operations nobody declares: {missing}"


@pytest.mark.parametrize("service", list(Service))
def test_no_operation_is_declared_that_no_route_uses(service):
    unused = sorted(declared(service).keys() - routed_operations(service)
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


def test_operation_methods_are_coroutines_taking_a_request():
    for service in HANDLER_CLASSES:
        for cls in handler_classes(service):
            for name, attribute in declared_operations(cls).items():
                method = getattr(cls, attribute)
                assert inspect.iscoroutinefunction(method), f"{name} is not async"
                assert len(inspect.signature(method).parameters) == 2, \
                    f"{name} should take (self, request)"


# --- the decorator itself ----------------------------------------------------------------------


class Base:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    @operation("thing.get")
    async def get(self, request: RpcRequest) -> dict:
        return {"tag": self.tag, "params": dict(request.params)}

    @operation("thing.delete")
    async def delete(self, _request: RpcRequest) -> None:
        return None

    async def helper(self, _request: RpcRequest) -> None:  # not an operation
        return None


class Derived(Base):
    @operation("thing.get")  # overrides under the same method name: still one operation
    async def get(self, _request: RpcRequest) -> dict:
        return {"derived": self.tag}

    @operation("thing.list")
    async def list_things(self, _request: RpcRequest) -> list:
        return []


def test_declared_operations_names_methods_without_an_instance():
    assert declared_operations(Base) == {"thing.get": "get", "thing.delete": "delete"}
    assert declared_operations(Derived) == {"thing.get": "get", "thing.delete": "delete",
                                            "thing.list": "list_things"}


async def test_operations_of_returns_bound_methods():
    first, second = Base("one"), Base("two")
    operations = operations_of(first)
    assert set(operations) == {"thing.get", "thing.delete"}
    for name, handler in operations.items():
        assert inspect.ismethod(handler) and handler.__self__ is first
        assert handler.__func__ is getattr(Base, declared_operations(Base)[name])
    assert await operations["thing.get"](RpcRequest(params={"id": "7"})) == \
        {"tag": "one", "params": {"id": "7"}}
    assert await operations_of(second)["thing.get"](RpcRequest()) == {"tag": "two", "params": {}}


async def test_operations_of_a_subclass_use_its_overrides():
    operations = operations_of(Derived("d"))
    assert await operations["thing.get"](RpcRequest()) == {"derived": "d"}
    assert operations["thing.delete"].__self__.tag == "d"


def test_the_same_operation_on_two_methods_is_refused():
    class Twice:
        @operation("thing.get")
        async def get(self, _request: RpcRequest) -> None:
            return None

        @operation("thing.get")
        async def get_again(self, _request: RpcRequest) -> None:
            return None

    with pytest.raises(ValueError, match=r"thing\.get"):
        declared_operations(Twice)
    with pytest.raises(ValueError, match=r"thing\.get"):
        operations_of(Twice())


def test_the_same_operation_on_a_new_method_of_a_subclass_is_refused():
    class Again(Base):
        @operation("thing.delete")
        async def remove(self, _request: RpcRequest) -> None:
            return None

    with pytest.raises(ValueError, match=r"thing\.delete"):
        declared_operations(Again)
