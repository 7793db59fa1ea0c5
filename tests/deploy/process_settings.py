"""A process's settings as it would load them from the environment a pod or a container
gives it (contracts.settings.load_settings, with only that environment): how the deployment
files' values, not only their names, are checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pytest

from contracts.names import Service
from contracts.settings import READS, Process, Settings, load_settings

# `python -m <package>` of each process, and the process's name in contracts/settings.py
PROCESS_OF_PACKAGE: dict[str, Process] = {
    "gateway": "gateway", **{f"{service}_svc": cast(Process, str(service)) for service in Service}}


def settings_from(environment: Mapping[str, str], process: Process) -> Settings:
    """load_settings(process) with exactly `environment`: every variable any process reads is
    first removed from this test process's own (tests/conftest.py sets the test profile's)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in set().union(*READS.values(), environment):
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        return load_settings(process)
