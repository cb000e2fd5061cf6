"""In production a service that owns tables refuses to start without a database URL (it never falls
back to an embedded PostgreSQL), while overview and news2 need none."""

from __future__ import annotations

import pytest

from tests.e2e.processes import clean_env, run

pytestmark = pytest.mark.e2e

PRODUCTION = {
    "SAMHANDLING_ENVIRONMENT": "production",
    "SAMHANDLING_JWKS": "https://helseid-sts.nhn.no/.well-known/openid-configuration/jwks",
    "SAMHANDLING_TOKEN_ISSUER": "https://helseid-sts.nhn.no",
    "SAMHANDLING_TOKEN_AUDIENCE": "samhandling",
}


@pytest.mark.parametrize("command", [["serve", "storage"], ["serve", "access"], ["migrate"]])
def test_table_owners_need_a_database_url_in_production(tmp_path, command):
    result = run(
        [*command, "--data-dir", str(tmp_path)] if command == ["migrate"] else command,
        clean_env(**PRODUCTION, SAMHANDLING_DATA_DIR=str(tmp_path)),
    )
    assert result.returncode == 2
    assert "SAMHANDLING_DATABASE_URL is required in production" in result.stderr
    assert not (tmp_path / "postgres").exists(), "no embedded database in production"
