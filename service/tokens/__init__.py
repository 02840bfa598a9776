"""The token feature: the request, policy, minting, signing keys, issuance and inspection.

What other features may use of it is re-exported here: Twilio's identity rules.
"""

from service.tokens.format import VOICE_IDENTITY, identity_problem

__all__ = ["VOICE_IDENTITY", "identity_problem"]
