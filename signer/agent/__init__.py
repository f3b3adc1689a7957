"""The school-side signing agent: signs hocba's two-step sessions with a USB token.

Public schools keep their seal and principal certificates on PKCS#11 tokens. The school
system asks hocba for a signing session (the certificate chain goes up, `data_to_sign` and
its SHA-256 `digest` come back), the token signs the digest and the raw signature value
goes back (see CONTRACT.md, "Client-held keys" and "Batches").

    token.py     the token: login, the key of a certificate, signing digests
    workflow.py  the two-step flow over signer.apiclient.ApiClient
    signer/cli/agent.py  `hocba agent sign` and `hocba agent list-keys`
"""

from signer.agent.crypto import digest_info, load_pem_certificates
from signer.agent.errors import AgentError, KeyNotFound, TokenError
from signer.agent.token import KeyMatch, TokenCertificate, TokenKey, TokenSession
from signer.agent.workflow import USER_AGENT, SignResult, sign_records

__all__ = [
    "USER_AGENT",
    "AgentError",
    "KeyMatch",
    "KeyNotFound",
    "SignResult",
    "TokenCertificate",
    "TokenError",
    "TokenKey",
    "TokenSession",
    "digest_info",
    "load_pem_certificates",
    "sign_records",
]
