"""A claim by its name or its dotted path: ``realm_access.roles``, ``o.rol``.

An exact top-level name wins (Auth0's namespaced claims are URLs with dots:
``https://example.com/roles``); else each dot steps into a nested object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MISSING = object()
#: A claim name a policy may use: a letter or ``_``, then up to 63 of these.
CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")


def claim_value(claims: Mapping[str, object], path: str) -> object:
    """The value at ``path``, or ``MISSING``."""
    if path in claims:
        return claims[path]
    value: object = claims
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return MISSING
        value = value[step]
    return value
