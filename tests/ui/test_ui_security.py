"""The dashboard's defences beyond the key: Host allow-list and Origin (DNS rebinding),
bytes-safe cookies, sessions that end at logout, Secure cookies, CSRF tokens bound to the
session, and a login throttle that holds under parallel requests."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_support import DATASET, csrf_of

from automlops.local.runtime import LocalRuntime
from automlops.serving.auth import default_allowed_hosts
from automlops.ui.security import CSRF_COOKIE, SESSION_COOKIE, Guard, LoginThrottle
from automlops.ui.up import UpOptions, build_app

KEY = "s3cret-key-for-tests"
ROLLBACK = f"/ui/models/{DATASET}/rollback"
LOCAL = "http://127.0.0.1:8080"


def _local_client(runtime: LocalRuntime, **options: object) -> TestClient:
    """The `up` app as the CLI builds it (default allow-list), reached as 127.0.0.1:8080."""
    app = build_app(runtime, allowed_hosts=default_allowed_hosts("127.0.0.1"), **options)  # type: ignore[arg-type]
    return TestClient(app, base_url=LOCAL)


def _sign_in(client: TestClient) -> str:
    """Sign in with KEY; returns the session cookie's value."""
    token = csrf_of(client, "/ui/login")
    login = client.post("/ui/login", data={"csrf_token": token, "key": KEY}, follow_redirects=False)
    assert login.status_code == 303, login.text
    session = client.cookies.get(SESSION_COOKIE)
    assert session
    return session


def test_up_allows_loopback_and_its_host_by_default() -> None:
    assert set(UpOptions().allowed_hosts) == {"127.0.0.1", "localhost", "[::1]"}
    assert "box.lan" in UpOptions(host="box.lan").allowed_hosts
    assert UpOptions(allowed_hosts=("a.example",)).allowed_hosts == ("a.example",)


@pytest.mark.parametrize("path", [ROLLBACK, "/ui/upload", "/ui/login", "/ui/logout"])
def test_a_foreign_host_is_refused_even_with_a_matching_origin(
    own_home: Path, open_home: Callable[[Path], LocalRuntime], path: str
) -> None:
    runtime = open_home(own_home)
    client = _local_client(runtime)
    token = csrf_of(client)
    # What a rebound page on evil.example sends: its own name as Host and Origin.
    rebound = {"host": "evil.example:8080", "origin": "http://evil.example:8080"}
    answer = client.post(path, data={"csrf_token": token}, headers=rebound)
    assert answer.status_code in (400, 403), answer.text
    assert client.get("/ui/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/endpoints", headers={"host": "evil.example"}).status_code == 400
    assert runtime.registry.read(DATASET).champion == 2  # nothing changed
    # The same form from the real origin passes.
    ok = client.post(
        ROLLBACK, data={"csrf_token": token}, headers={"origin": LOCAL}, follow_redirects=False
    )
    assert ok.status_code == 303


def test_origin_is_checked_against_the_allow_list_not_the_request_host(
    own_home: Path, open_home: Callable[[Path], LocalRuntime]
) -> None:
    # The dashboard mounted without the middleware (a caller's own app) still refuses it.
    runtime = open_home(own_home)
    client = TestClient(build_app(runtime), base_url="http://evil.example")
    client.app.state.ui.guard.allowed_hosts = frozenset(default_allowed_hosts("127.0.0.1"))
    token = csrf_of(client)
    answer = client.post(
        ROLLBACK, data={"csrf_token": token}, headers={"origin": "http://evil.example"}
    )
    assert answer.status_code == 403
    assert runtime.registry.read(DATASET).champion == 2


@pytest.mark.parametrize("cookie", [SESSION_COOKIE, CSRF_COOKIE])
@pytest.mark.parametrize("protect", [False, True])
def test_non_ascii_cookies_are_treated_as_absent(
    ui_home: Path, client_for: Callable[..., TestClient], cookie: str, protect: bool
) -> None:
    options: dict[str, object] = {"api_key": KEY, "protect_ui": True} if protect else {}
    client = client_for(ui_home, **options)
    raw = {"cookie": f"{cookie}=ключ-é".encode()}
    page = client.get("/ui/", headers=raw, follow_redirects=False)
    assert page.status_code == (303 if protect else 200)
    assert client.get("/ui/login", headers=raw).status_code == 200
    state = client.get("/ui/api/state", headers=raw)
    assert state.status_code == (401 if protect else 200)
    login = client.post("/ui/login", data={"csrf_token": "ключ", "key": KEY}, headers=raw)
    assert login.status_code == 403  # the form's token does not match: refused, not a 500


def test_a_session_ends_at_logout(ui_home: Path, open_home: Callable[[Path], LocalRuntime]) -> None:
    runtime = open_home(ui_home)
    client = _local_client(runtime, api_key=KEY, protect_ui=True)
    session = _sign_in(client)
    assert client.get("/ui/api/state").status_code == 200
    token = csrf_of(client)
    logout = client.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303
    deleted = logout.headers["set-cookie"]
    assert SESSION_COOKIE in deleted and "SameSite=strict" in deleted and "HttpOnly" in deleted
    # A copy of the cookie kept from before the logout opens nothing any more.
    replay = TestClient(client.app, base_url=LOCAL)
    replay.cookies.set(SESSION_COOKIE, session, path="/ui")
    assert replay.get("/ui/api/state").status_code == 401
    assert replay.get("/ui/", follow_redirects=False).status_code == 303
    # Each sign-in is a new session.
    assert _sign_in(client) != session


def test_secure_cookies_on_request(
    ui_home: Path, open_home: Callable[[Path], LocalRuntime]
) -> None:
    runtime = open_home(ui_home)
    plain = _local_client(runtime, api_key=KEY)
    token = csrf_of(plain, "/ui/login")
    login = plain.post("/ui/login", data={"csrf_token": token, "key": KEY}, follow_redirects=False)
    assert "secure" not in login.headers["set-cookie"].lower()
    secure = _local_client(runtime, api_key=KEY, secure_cookies=True)
    token = csrf_of(secure, "/ui/login")
    login = secure.post("/ui/login", data={"csrf_token": token, "key": KEY}, follow_redirects=False)
    assert all("Secure" in c for c in login.headers.get_list("set-cookie"))


def test_csrf_tokens_are_bound_to_the_session(
    own_home: Path, open_home: Callable[[Path], LocalRuntime]
) -> None:
    runtime = open_home(own_home)
    alice = _local_client(runtime, api_key=KEY)
    _sign_in(alice)
    alice_token = csrf_of(alice)
    mallory = _local_client(runtime, api_key=KEY)
    anonymous_token = csrf_of(mallory)
    _sign_in(mallory)
    # Mallory plants her own session's token (cookie and form) in Alice's browser: refused.
    mallory_token = csrf_of(mallory)
    alice.cookies.set(CSRF_COOKIE, mallory_token, path="/ui")
    assert alice.post(ROLLBACK, data={"csrf_token": mallory_token}).status_code == 403
    # A token made before signing in does not act for the session either.
    alice.cookies.set(CSRF_COOKIE, anonymous_token, path="/ui")
    assert alice.post(ROLLBACK, data={"csrf_token": anonymous_token}).status_code == 403
    assert runtime.registry.read(DATASET).champion == 2
    alice.cookies.set(CSRF_COOKIE, alice_token, path="/ui")
    ok = alice.post(ROLLBACK, data={"csrf_token": alice_token}, follow_redirects=False)
    assert ok.status_code == 303


def test_parallel_wrong_logins_are_counted_exactly_and_lock_out(
    ui_home: Path, open_home: Callable[[Path], LocalRuntime]
) -> None:
    runtime = open_home(ui_home)
    client = _local_client(runtime, api_key=KEY)
    guard: Guard = client.app.state.ui.guard  # type: ignore[attr-defined]
    guard.throttle = LoginThrottle(max_failures=5, lockout_s=300.0, delay_s=0.05)
    token = csrf_of(client, "/ui/login")

    def attempt(key: str) -> int:
        return client.post("/ui/login", data={"csrf_token": token, "key": key}).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(attempt, [f"guess-{i}" for i in range(30)]))
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 25, statuses
    # Locked out: even the right key is refused for now; a key header still works.
    assert attempt(KEY) == 429
    assert client.get("/ui/api/state", headers={"x-api-key": KEY}).status_code == 200


def test_a_successful_login_resets_the_failure_count(
    ui_home: Path, open_home: Callable[[Path], LocalRuntime]
) -> None:
    runtime = open_home(ui_home)
    client = _local_client(runtime, api_key=KEY)
    guard: Guard = client.app.state.ui.guard  # type: ignore[attr-defined]
    guard.throttle = LoginThrottle(max_failures=3, lockout_s=300.0, delay_s=0.0)
    token = csrf_of(client, "/ui/login")
    for _ in range(2):
        assert client.post("/ui/login", data={"csrf_token": token, "key": "x"}).status_code == 401
    _sign_in(client)
    token = csrf_of(client, "/ui/login")
    for _ in range(2):
        assert client.post("/ui/login", data={"csrf_token": token, "key": "x"}).status_code == 401
