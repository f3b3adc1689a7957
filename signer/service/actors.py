"""Who asks: an API client (or the CLI), named in audit rows."""

from __future__ import annotations

from dataclasses import dataclass

from signer.clients import Client


@dataclass(frozen=True)
class Actor:
    name: str
    client: Client

    @classmethod
    def of(cls, client: Client) -> Actor:
        return cls(f"client:{client.name}", client)
