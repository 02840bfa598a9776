"""The token feature: the request, policy, minting, signing keys, issuance and inspection.

What other features may use of it is re-exported here: Twilio's identity rules, and the
identity a Voice client identity stands for.
"""

from service.tokens.format import VOICE_IDENTITY, identity_problem
from service.tokens.identities import base_identity

__all__ = ["VOICE_IDENTITY", "base_identity", "identity_problem"]
