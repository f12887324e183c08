"""Speak the OCI distribution protocol: repositories as copy targets, over httpx.

Import the submodules directly (``orascp.registry.client``, ``.auth``, ``.credentials``): this
package imports nothing itself, so reading credentials does not pay for importing httpx.
"""
