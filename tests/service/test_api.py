"""``medverse.service.api``, the face the CLI uses: users and tokens, and ``medverse users``."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.3 asks for httpx2; httpx 0.28 is what is pinned
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from medverse.cli.main import main
from medverse.core.settings import Settings
from medverse.service import api, create_app
from medverse.service.errors import ConflictError, NotFoundError


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a fresh SQLite service under ``tmp_path`` (no database URL from outside)."""
    monkeypatch.delenv("MEDVERSE_DATABASE_URL", raising=False)
    return Settings(data_dir=tmp_path / "data")


def _me(settings: Settings, token: str) -> tuple[int, dict[str, str]]:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code, answer.json()


def test_a_user_added_through_the_api_gets_a_token_the_service_accepts(settings: Settings) -> None:
    added = api.add_user(settings, "ann", "clinician")
    token = api.issue_token(settings, "ann")
    assert (added.name, added.role, added.tokens) == ("ann", "clinician", 0)
    assert [(u.name, u.tokens) for u in api.list_users(settings)] == [("ann", 1)]
    assert _me(settings, token) == (200, {"name": "ann", "role": "clinician"})


def test_revoking_and_removing_locks_the_user_out(settings: Settings) -> None:
    api.add_user(settings, "bob", "researcher")
    first = api.issue_token(settings, "bob")
    second = api.issue_token(settings, "bob", revoke_others=True)
    assert _me(settings, first)[0] == 401
    assert _me(settings, second)[0] == 200
    assert api.remove_user(settings, "bob").name == "bob"
    assert _me(settings, second)[0] == 401
    assert api.list_users(settings) == []


def test_clear_errors_for_a_duplicate_or_unknown_user(settings: Settings) -> None:
    api.add_user(settings, "cat", "admin")
    with pytest.raises(ConflictError, match="cat"):
        api.add_user(settings, "cat", "admin")
    with pytest.raises(NotFoundError, match="dan"):
        api.remove_user(settings, "dan")
    with pytest.raises(NotFoundError, match="dan"):
        api.issue_token(settings, "dan")


def test_users_command_lists_users_with_their_token_counts(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # add, token and remove through the command are tested in test_security
    data = ["--data-dir", str(settings.data_dir)]
    assert main(["users", "add", "eve", "--role", "clinician", *data]) == 0
    assert main(["users", "add", "fay", "--role", "researcher", *data]) == 0
    assert main(["users", "token", "eve", *data]) == 0
    capsys.readouterr()
    assert main(["users", "list", *data]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "eve\tclinician\t1 token(s)",
        "fay\tresearcher\t0 token(s)",
    ]
