"""Helpers shared by the test suites: valid synthetic identities and call metadata."""

from __future__ import annotations

import random

from services.platform.identifiers import person_number_problem

BODO, BAERUM = "1804", "3201"
BODO_ORG, BAERUM_ORG = "972418013", "935478715"


def person_number(rng: random.Random | None = None) -> str:
    """A random synthetic fødselsnummer with valid check digits (month + 80, as in Tenor test data)."""
    rng = rng or random.Random()
    while True:
        body = f"{rng.randint(1, 28):02d}{rng.randint(81, 92):02d}{rng.randint(0, 99):02d}{rng.randint(0, 999):03d}"
        for k1 in range(10):
            for k2 in range(10):
                candidate = f"{body}{k1}{k2}"
                if person_number_problem(candidate) is None:
                    return candidate


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
