"""Defence in depth for what leaves a process as telemetry: anything that looks like a person number
or a credential is replaced before a span is exported or a log line is written.

The first line of defence is not recording such values at all (no request bodies, no metadata
values, no SQL parameters); this catches what slips through, e.g. an identifier in an error text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.platform.identifiers import person_number_problem

REDACTED = "[redacted]"

# Eleven digits on their own (fødselsnummer, D-number), also written 6+5 with a space. [0-9], not
# \d, so other scripts' digits do not count; any 11-digit run is caught, valid check digits or not.
_PERSON_NUMBER = re.compile(r"(?<![0-9])[0-9]{6} ?[0-9]{5}(?![0-9])")
# A bearer credential, or anything shaped like a JWT (header.payload[.signature], base64url JSON).
_CREDENTIAL = re.compile(r"(?i)\bbearer\s+\S+|\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
# Attribute keys whose value is a secret whatever it looks like.
_SECRET_KEYS = re.compile(r"(?i)authorization|cookie|token|password|secret")

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]


def redact_text(text: str) -> str:
    """`text` with person numbers and credentials replaced; the same object when there are none."""
    if _PERSON_NUMBER.search(text):
        text = _PERSON_NUMBER.sub(REDACTED, text)
    if _CREDENTIAL.search(text):
        text = _CREDENTIAL.sub(REDACTED, text)
    return text


def _is_person_number_int(value: int) -> bool:
    if 10**10 <= value < 10**11:
        return True
    return 10**9 <= value < 10**10 and person_number_problem(f"{value:011d}") is None


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEYS.search(key))


def redact_value(key: str, value: AttributeValue) -> AttributeValue:
    """An attribute value made safe: secrets by key, person numbers and credentials by content.

    Integers are checked too: a person number fits in one, and loses its leading zero there (a
    10-digit integer is redacted when, zero-padded, its check digits are a person number's)."""
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return REDACTED if _is_person_number_int(value) else value
    if isinstance(value, (list, tuple)):
        redacted = [redact_value("", item) for item in value]
        if all(new is old for new, old in zip(redacted, value, strict=True)):
            return value
        # OpenTelemetry sequences are homogeneous: once one item became text, all must be text.
        return tuple(item if isinstance(item, str) else str(item) for item in redacted)
    return value
