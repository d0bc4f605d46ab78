"""Shared fixtures: settings isolated per test, SQLite and PostgreSQL databases, Redis.

A test that takes a service (the `postgres_url` or `redis_url` fixture, or `db_url` on
PostgreSQL) is an integration test: marked so here, whatever its module says, so that
`-m "not integration"` runs with no service at all. A service that is down skips its
tests locally with the reason, and fails them in CI (CI=true), where .ci/run has started
every service.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from shared.database.migrate import upgrade
from shared.settings import Settings, get_settings
from testkit.databases import ADMIN_URL, DatabaseUnreachable, throwaway_database
from testkit.drills.services import PrivateRedis, ServiceUnavailable
from testkit.missing_services import service_missing

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
NEWSGROUPS_HOME = os.environ.get("SCIKIT_LEARN_DATA") or str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "20newsgroups"
)


SERVICE_FIXTURES = frozenset({"postgres_url", "redis_url"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all", action="store_true",
                     help="the whole suite: the fault drills and long training too (`make test`, CI)")


# Left out of a plain `pytest` (the set a developer runs every few minutes); `--all` or a -m that
# names them brings them back.
LONG_MARKERS = ("drill", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if config.getoption("--all") or config.getoption("-m"):
        return
    drills = f"{os.sep}tests{os.sep}drills{os.sep}"
    long = {item for item in items
            if drills in str(item.path) or any(item.get_closest_marker(m) for m in LONG_MARKERS)}
    if long:
        config.hook.pytest_deselected(items=[item for item in items if item in long])
        items[:] = [item for item in items if item not in long]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own TOPICQ_HOME and no Gemini key from the developer's shell."""
    monkeypatch.setenv("TOPICQ_HOME", str(tmp_path / "home"))
    for var in ("DATABASE_URL", "MODEL_DIR", "GEMINI_API_KEY", "GEMINI_API_KEY_FILE",
                "EMBEDDER", "GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from the module's `env` fixture, which the test process shares with its workers."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'topicq.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_database(ADMIN_URL, "topicq_test"))
        except DatabaseUnreachable as exc:
            service_missing("PostgreSQL", exc)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of the tests' own, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", exc)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def newsgroups_home() -> str:
    if not (Path(NEWSGROUPS_HOME) / "20news-bydate_py3.pkz").is_file():
        pytest.skip(f"20 Newsgroups cache not found at {NEWSGROUPS_HOME} (set SCIKIT_LEARN_DATA)")
    return NEWSGROUPS_HOME


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    """A private server: kombu's unacked hash is shared by every queue of a db, so the shared
    instance's db 13 would mix in other tests' held messages."""
    try:
        server = PrivateRedis(aof=False)
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server
