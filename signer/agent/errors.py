"""The agent's errors: one line for the user, never the PIN or the API key."""

from __future__ import annotations

from signer.errors import HocbaError


class AgentError(HocbaError):
    """An error the agent reports to the user as one line (client-side only: the service
    never raises it, so its problem mapping is never served)."""

    status = 500
    code = "agent_error"
    title = "Signing agent error"


class TokenError(AgentError):
    """The PKCS#11 module, token, login or signing failed."""

    code = "token_error"
    title = "Token error"


class KeyNotFound(TokenError):
    """No private key (or certificate) fits what was asked for."""

    code = "token_key_not_found"
    title = "No matching key on the token"
