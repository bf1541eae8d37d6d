"""PII masking, applied by the services to everything a client sends before any of it is stored.

Each masked value becomes `[masked:<kind>:<tag>]`: visibly masked, and the tag (an HMAC of the value under the
site's SECRET_KEY) keeps equal values equal, so grouping by a masked id still works without revealing it.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

# Bounded parts, and a match may only start where a run of local-part characters starts: a long run without a
# valid address is then scanned once (linear), never retried from every position (quadratic).
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}"
)
CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
CARD_DIGITS_AT_LEAST = 13
MARKER_PREFIX = "[masked:"


def _tag(value: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"feedbackhub-pii:{value}".encode(), hashlib.sha256)
    return digest.hexdigest()[:12]


def marker(kind: str, value: str) -> str:
    return f"{MARKER_PREFIX}{kind}:{_tag(value)}]"


def bounded(text: str, limit: int) -> str:
    """Masking lengthens text; a value that no longer fits its column becomes one marker for the whole."""
    return text if len(text) <= limit else marker("long", text)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        number = int(digit)
        if position % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return marker("card", digits) if luhn_valid(digits) else match.group()


@dataclass(frozen=True)
class RedactionPolicy:
    mask_emails: bool = True
    mask_cards: bool = True
    drop_keys: frozenset[str] = frozenset()
    hash_keys: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(
        cls,
        *,
        mask_emails: bool,
        mask_cards: bool,
        drop_keys: Iterable[str],
        hash_keys: Iterable[str],
        patterns: Iterable[dict[str, str]],
    ) -> "RedactionPolicy":
        return cls(
            mask_emails=mask_emails,
            mask_cards=mask_cards,
            drop_keys=frozenset(drop_keys),
            hash_keys=frozenset(hash_keys),
            patterns=tuple((p["name"], re.compile(p["pattern"])) for p in patterns),
        )

    def text(self, value: str) -> str:
        if self.mask_emails and "@" in value:
            value = EMAIL.sub(lambda m: marker("email", m.group()), value)
        if self.mask_cards and len(value) >= CARD_DIGITS_AT_LEAST:  # shorter text cannot hold a card number
            value = CARD_CANDIDATE.sub(_mask_card, value)
        for name, pattern in self.patterns:
            value = pattern.sub(lambda m, name=name: marker(name, m.group()), value)
        return value

    def _key_rule(self, key: str, path: str) -> str | None:
        if key in self.drop_keys or path in self.drop_keys:
            return "dropped"
        if key in self.hash_keys or path in self.hash_keys:
            return "hash"
        return None

    def value(self, value: Any, path: str) -> Any:
        """`value` with PII masked; `path` names it for key rules ("input", "attributes.user.email", ...)."""
        if isinstance(value, str):
            return self.text(value)
        if self.mask_cards and isinstance(value, int) and not isinstance(value, bool):
            if not 10**12 <= abs(value) < 10**19:  # a card number has 13 to 19 digits
                return value
            digits = str(abs(value))
            return marker("card", digits) if luhn_valid(digits) else value
        if isinstance(value, list):
            return [self.value(item, path) for item in value]
        if isinstance(value, dict):
            masked = {}
            keyed = bool(self.drop_keys or self.hash_keys)
            for key, item in value.items():
                child = f"{path}.{key}" if keyed else path  # paths matter only to key rules
                rule = self._key_rule(str(key), child) if keyed else None
                if rule == "dropped":
                    masked[key] = marker("dropped", str(item))
                elif rule == "hash":
                    masked[key] = marker("hash", str(item))
                else:
                    masked[self.text(str(key)) if isinstance(key, str) else key] = self.value(item, child)
            return masked
        return value
