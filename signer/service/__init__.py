"""The service layer: everything the API offers, without HTTP. Blueprints parse,
authorize and answer; these classes decide and act (see ARCHITECTURE.md)."""

from signer.service.actors import Actor
from signer.service.core import Hocba

__all__ = ["Actor", "Hocba"]

