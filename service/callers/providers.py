"""Several identity providers at once: the policy file's ``[[providers]]``.

For an app that migrates between providers, or staff on one and customers on another.
Each provider has its issuer, the audiences and client ids its tokens may carry, an
optional JWKS URL (else discovery) and the claim that becomes the identity. With more
than one, each needs an ``identity_prefix`` (letters and digits, then one ``_``):
identities of different providers never collide, ``staff_alice`` is never
``customer_alice``. The ``OIDC_*`` variables remain the one-provider shortcut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from service.base.tables import TableReader
from service.config import variables
from service.config.declared import ASYMMETRIC, DEV_ISSUER, MAX_LEEWAY_SECONDS
from service.config.settings import IdentityProvider

TABLE = "providers"
PREFIX = re.compile(r"[A-Za-z0-9]{1,16}_")
_KEYS = {
    "name",
    "issuer",
    "audiences",
    "client_ids",
    "jwks_url",
    "algorithms",
    "leeway",
    "required_typ",
    "identity_claim",
    "identity_prefix",
}


def parse_providers(reader: TableReader, value: object) -> tuple[IdentityProvider, ...]:
    """The ``[[providers]]`` array: every provider, checked, with distinct prefixes."""
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.problem("providers must be an array of tables ([[providers]])")
        return ()
    providers = tuple(_provider(reader, raw, index) for index, raw in enumerate(value))
    names = [provider.name for provider in providers]
    issuers = [provider.issuer for provider in providers]
    prefixes = [provider.identity_prefix for provider in providers]
    for label, found in (("name", names), ("issuer", issuers), ("identity_prefix", prefixes)):
        for repeated in sorted({item for item in found if found.count(item) > 1}):
            reader.problem(f"[[providers]] {label} {repeated!r} is used twice")
    if len(providers) > 1 and not all(prefixes):
        reader.problem(
            "[[providers]]: with more than one provider each needs an identity_prefix "
            "(such as 'staff_'), so that their identities never collide"
        )
    return providers


def _provider(reader: TableReader, raw: object, index: int) -> IdentityProvider:
    where = f"providers[{index}]"
    table = reader.table(raw, where)
    reader.known_keys(table, _KEYS, where)
    issuer = _url(reader, table.get("issuer"), f"{where}.issuer", variables.issuer_url)
    if issuer == DEV_ISSUER:
        reader.problem(f"{where}.issuer names the development issuer")
    audiences = _strings(reader, table, "audiences", where)
    client_ids = _strings(reader, table, "client_ids", where)
    if not audiences and not client_ids:
        reader.problem(f"{where} needs audiences, client_ids or both")
    prefix = table.get("identity_prefix", "")
    if not isinstance(prefix, str) or (prefix and not PREFIX.fullmatch(prefix)):
        reader.problem(f"{where}.identity_prefix must be letters and digits, then _: 'staff_'")
        prefix = ""
    name = table.get("name", issuer or where)
    return IdentityProvider(
        issuer=issuer or "",
        audiences=audiences,
        client_ids=client_ids,
        jwks_url=_url(reader, table.get("jwks_url"), f"{where}.jwks_url", variables.key_url),
        algorithms=_algorithms(reader, table, where),
        leeway_seconds=reader.integer(
            table.get("leeway", 30), f"{where}.leeway", low=0, high=MAX_LEEWAY_SECONDS, default=30
        ),
        required_typ=_text(reader, table.get("required_typ"), f"{where}.required_typ"),
        identity_claim=_text(reader, table.get("identity_claim"), f"{where}.identity_claim"),
        identity_prefix=prefix,
        name=name if isinstance(name, str) else where,
    )


def _url(reader: TableReader, value: object, where: str, check: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not callable(check):
        reader.problem(f"{where} must be a URL")
        return None
    try:
        checked: str = check(value)
    except ValueError as error:
        reader.problem(f"{where} {error}")
        return None
    return checked


def _strings(
    reader: TableReader, table: Mapping[str, object], key: str, where: str
) -> tuple[str, ...]:
    if key not in table:
        return ()
    return reader.strings(table[key], f"{where}.{key}", what="strings")


def _algorithms(reader: TableReader, table: Mapping[str, object], where: str) -> tuple[str, ...]:
    found = _strings(reader, table, "algorithms", where) or ("RS256", "ES256")
    for algorithm in found:
        if algorithm not in ASYMMETRIC:
            reader.problem(f"{where}.algorithms: {algorithm!r} is not an asymmetric algorithm")
    return found


def _text(reader: TableReader, value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        reader.problem(f"{where} must be a non-empty string")
        return None
    return value
