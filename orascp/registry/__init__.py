"""Speak the OCI distribution protocol: repositories as copy targets, over httpx."""

from __future__ import annotations

from orascp.registry.client import RegistryClient, RegistryOptions, Repository

__all__ = ["RegistryClient", "RegistryOptions", "Repository"]
