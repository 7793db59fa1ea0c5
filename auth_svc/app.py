"""Wires the auth service's operations into the shared process skeleton."""

from __future__ import annotations

from contracts.service import ServiceProcess


def configure(process: ServiceProcess) -> None:
    """Only the skeleton's `health` operation so far."""
