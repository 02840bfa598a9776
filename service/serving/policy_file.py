"""The policy file, read once: each table goes to the feature that owns it.

``[tokens]``, ``[identity]`` and ``[[rules]]`` to the token feature, ``[limits]`` to
the budgets, ``[dial]`` and ``[incoming]`` to calls, ``[usage]`` and ``[usage_alert]``
to usage, ``[[providers]]`` to callers. One ``TableReader`` collects every problem;
the checks that span several tables live here, at the end.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service.account.policy import TABLES as ACCOUNT_TABLES
from service.account.policy import UsagePolicy, parse_usage_policy
from service.base.errors import ConfigurationError
from service.base.tables import TableReader
from service.bookkeeping.limits import CALLS, SPENDING_BUDGETS, Budgets, parse_budgets
from service.callers.providers import parse_providers
from service.config.settings import IdentityProvider
from service.tokens.policy import TokenPolicy, parse_token_policy
from service.voice.dialing import DialPolicy, parse_dial, parse_incoming

TABLES = frozenset(
    {
        "tokens",
        "identity",
        "rules",
        "limits",
        "dial",
        "incoming",
        "providers",
        *ACCOUNT_TABLES,
    }
)


#: How deep a policy may nest; the deepest real one is 5 (a rule's claims table).
MAX_NESTING = 16


@dataclass(frozen=True)
class Policy:
    """Every table of the policy file, parsed and checked."""

    tokens: TokenPolicy
    budgets: Budgets
    #: where Voice clients may call; None: nowhere (outgoing calls are refused)
    dial: DialPolicy | None = None
    #: our numbers -> the identities an inbound call on each rings
    incoming: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    usage: UsagePolicy = field(default_factory=UsagePolicy)
    #: identity providers beside (or instead of) the ``OIDC_*`` shortcut
    providers: tuple[IdentityProvider, ...] = ()

    def all_budgets(self) -> Budgets:
        """Every budget enforced: ``[limits]`` and the dial policy's call budget."""
        calls = self.dial.calls_per_identity if self.dial is not None else None
        return self.budgets.with_budget(CALLS, calls)

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and validate a policy file; raise ``ConfigurationError`` with every problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError([f"policy file {str(path)!r} cannot be read"]) from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "policy") -> Policy:
        too_deep = f"{source}: nested more than {MAX_NESTING} deep (arrays, tables or dotted keys)"
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError([f"{source}: not valid TOML ({error})"]) from None
        except RecursionError:  # tomllib recurses once per level: a hostile file's depth
            raise ConfigurationError([too_deep]) from None
        if _depth(document) > MAX_NESTING:
            raise ConfigurationError([too_deep])
        reader = TableReader(source)
        reader.known_keys(document, TABLES, "the top level")
        policy = cls(
            tokens=parse_token_policy(reader, document),
            budgets=parse_budgets(reader, document.get("limits", {})),
            dial=parse_dial(reader, document.get("dial")),
            incoming=parse_incoming(reader, document.get("incoming", {})),
            usage=parse_usage_policy(reader, document),
            providers=parse_providers(reader, document.get("providers")),
        )
        if not reader.problems:
            _cross_check(reader, policy)
        if reader.problems:
            raise ConfigurationError(reader.problems)
        return policy


def _depth(document: Mapping[str, object]) -> int:
    """How deep arrays and tables nest (the top level is 1), without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(value, Mapping):
            pending.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            pending.extend((child, depth + 1) for child in value)
    return deepest


def _cross_check(reader: TableReader, policy: Policy) -> None:
    """Problems that no single table shows."""
    cost = policy.budgets.voice_outgoing_cost
    for name in SPENDING_BUDGETS:
        smallest = policy.budgets.smallest_amount(name)
        if smallest is not None and cost > smallest:
            reader.problem(
                f"[limits].voice_outgoing_cost ({cost}) is more than [limits].{name} admits "
                f"in one window ({smallest}): every token that can place calls would be refused"
            )
