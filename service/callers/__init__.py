"""Who is calling? Verified callers from bearer credentials."""

from service.callers.authenticator import Authenticator, Caller, Identity, Provider
from service.callers.verifier import IssuerVerifier

__all__ = ["Authenticator", "Caller", "Identity", "IssuerVerifier", "Provider"]
