"""Dashboard actions over TestClient: promote, rollback, redrive, upload; CSRF and API-key
refusals; --protect-ui; the inference API behind the key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ui_support import DATASET, HOSTILE, csrf_of, hostile_csv

from automlops import keys
from automlops.local.runtime import LocalRuntime
from automlops.manifests import load_manifest
from automlops.ui.security import CSRF_COOKIE, SESSION_COOKIE, Guard

KEY = "s3cret-key-for-tests"
PROMOTE = f"/ui/models/{DATASET}/promote"
ROLLBACK = f"/ui/models/{DATASET}/rollback"


def test_promote_and_rollback_with_a_valid_token(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home)
    token = csrf_of(client, f"/ui/models/{DATASET}")
    response = client.post(ROLLBACK, data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/ui/models/{DATASET}?done=rolled-back")
    registry = open_home(own_home).registry
    assert registry.read(DATASET).champion == 1
    page = client.get(response.headers["location"]).text
    assert "Rolled back: version 1 of cancer serves again." in page

    response = client.post(PROMOTE, data={"csrf_token": token, "version": "2"})
    assert response.status_code == 200  # followed the redirect
    assert registry.read(DATASET).champion == 2
    assert "Version 2 of cancer is now the champion." in response.text
    # Nothing to roll back to any more than the history holds: a clear 409, not a 500.
    client.post(ROLLBACK, data={"csrf_token": token})
    refused = client.post(ROLLBACK, data={"csrf_token": token})
    assert refused.status_code == 409 and "no earlier champion" in refused.text
    assert client.post(PROMOTE, data={"csrf_token": token, "version": "7"}).status_code == 409


@pytest.mark.parametrize(
    "case",
    ["no token", "wrong token", "forged token", "cookie missing", "other origin", "null origin"],
)
def test_csrf_refusals(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
    case: str,
) -> None:
    client = client_for(own_home)
    token = csrf_of(client)
    data = {"csrf_token": token}
    headers: dict[str, str] = {}
    if case == "no token":
        data = {}
    elif case == "wrong token":
        data = {"csrf_token": Guard().new_csrf_token()}  # made by another process
    elif case == "forged token":
        nonce = token.partition(".")[0]
        data = {"csrf_token": f"{nonce}.{'0' * 64}"}
        client.cookies.set(CSRF_COOKIE, data["csrf_token"], path="/ui")
    elif case == "cookie missing":
        client.cookies.clear()
    elif case == "other origin":
        headers = {"origin": "http://evil.example"}
    elif case == "null origin":
        headers = {"origin": "null"}
    response = client.post(ROLLBACK, data=data, headers=headers)
    assert response.status_code == 403
    assert open_home(own_home).registry.read(DATASET).champion == 2  # nothing changed


def test_same_origin_post_passes_origin_check(
    own_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(own_home)
    token = csrf_of(client)
    ok = client.post(
        ROLLBACK,
        data={"csrf_token": token},
        headers={"origin": "http://testserver"},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_api_key_guards_actions_and_the_inference_api(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home, api_key=KEY)
    registry = open_home(own_home).registry
    # Reading stays open without --protect-ui; acting does not.
    page = client.get(f"/ui/models/{DATASET}")
    assert page.status_code == 200 and "Sign in" in page.text
    token = csrf_of(client)
    refused = client.post(ROLLBACK, data={"csrf_token": token})
    assert refused.status_code == 401 and "Sign in" in refused.text
    assert client.post(ROLLBACK, headers={"x-api-key": "wrong"}).status_code == 401
    assert registry.read(DATASET).champion == 2

    # A key header needs no CSRF token: browsers cannot send it cross-site.
    by_header = client.post(ROLLBACK, headers={"x-api-key": KEY}, follow_redirects=False)
    assert by_header.status_code == 303
    assert registry.read(DATASET).champion == 1
    bearer = client.post(
        PROMOTE,
        data={"version": "2"},
        headers={"authorization": f"Bearer {KEY}"},
        follow_redirects=False,
    )
    assert bearer.status_code == 303

    # The login form: a wrong key is refused, the right one sets an HttpOnly session cookie.
    wrong = client.post("/ui/login", data={"csrf_token": token, "key": "nope"})
    assert wrong.status_code == 401
    login = client.post(
        "/ui/login",
        data={"csrf_token": token, "key": KEY, "next": f"/ui/models/{DATASET}"},
        follow_redirects=False,
    )
    assert login.status_code == 303 and login.headers["location"] == f"/ui/models/{DATASET}"
    cookie = login.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert KEY not in cookie
    # Signed in, forms carry the session's own token (the one made before no longer acts).
    assert client.post(ROLLBACK, data={"csrf_token": token}).status_code == 403
    token = csrf_of(client)
    assert client.post(ROLLBACK, data={"csrf_token": token}).status_code == 200
    assert registry.read(DATASET).champion == 1
    # Signed in, the CSRF token is still required.
    assert client.post(PROMOTE, data={"version": "2"}).status_code == 403
    # Open redirects are not followed.
    evil = client.post(
        "/ui/login",
        data={"csrf_token": token, "key": KEY, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/ui/"

    # The inference API needs the key too; /ping stays open.
    api = TestClient(client.app)
    assert api.get("/ping").status_code == 200
    assert api.get(f"/endpoints/{DATASET}").status_code == 401
    assert api.get(f"/endpoints/{DATASET}", headers={"x-api-key": KEY}).status_code == 200
    assert (
        api.get(f"/endpoints/{DATASET}", headers={"authorization": f"Bearer {KEY}"}).status_code
        == 200
    )


def test_protect_ui_needs_the_key_to_read(
    ui_home: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(ui_home, api_key=KEY, protect_ui=True)
    for path in ("/ui/", "/ui/runs", f"/ui/models/{DATASET}", "/ui/dlq", "/ui/upload"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=")
    assert client.get("/ui/api/state").status_code == 401
    assert client.get("/ui/files/cancer/x.png", follow_redirects=False).status_code == 303
    assert client.get("/ui/static/app.css").status_code == 200  # the login page needs it
    login_page = client.get("/ui/login")
    assert login_page.status_code == 200
    # Nothing of the workspace leaks before signing in: names, path, counts, navigation.
    for secret in ("cancer", str(ui_home), "Dead letters"):
        assert secret not in login_page.text, secret
    assert 'data-fingerprint=""' in login_page.text
    token = csrf_of(client, "/ui/login")
    client.post("/ui/login", data={"csrf_token": token, "key": KEY})
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/api/state").status_code == 200
    assert client.get("/ui/", headers={"x-api-key": KEY}).status_code == 200
    token = csrf_of(client)  # the session's token
    logout = client.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert logout.status_code == 303
    # The login page it lands on confirms it (the renderer adds every page's notice).
    assert "Signed out." in client.get(logout.headers["location"]).text
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_protect_ui_without_a_key_is_refused(tmp_path: Path, open_home) -> None:  # type: ignore[no-untyped-def]
    from automlops.ui.up import build_app

    with pytest.raises(ValueError, match="needs an API key"):
        build_app(open_home(tmp_path / "w"), protect_ui=True)


def test_redrive_one_and_all(
    own_home: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    client = client_for(own_home)
    runtime = open_home(own_home)
    queue = runtime.settings.queues.evaluation
    (message,) = runtime.queue.dead_letters(queue)
    token = csrf_of(client, "/ui/dlq")
    missing = client.post("/ui/dlq/redrive", data={"csrf_token": token, "message_id": "nope"})
    assert missing.status_code == 404
    done = client.post("/ui/dlq/redrive", data={"csrf_token": token, "message_id": message.id})
    assert done.status_code == 200 and "Moved 1 message(s)" in done.text
    assert runtime.queue.dead_letters(queue) == []
    assert [m.id for m in runtime.queue.list_messages(queue)] == [message.id]
    assert "Nothing here" in done.text
    none_left = client.post("/ui/dlq/redrive", data={"csrf_token": token, "all": "1"})
    assert "Moved 0 message(s)" in none_left.text


def test_upload_form_stores_manifest_then_file(
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    home = tmp_path / "w"
    client = client_for(home)
    token = csrf_of(client, "/ui/upload")
    response = client.post(
        "/ui/upload",
        data={
            "csrf_token": token,
            "dataset": "",
            "target": "y",
            "task": "binary",
            "positive": "1",
            "time_budget": "1",
            "learners": ["linear"],
            "drop": ["b"],
            "drop_text": "c, d",
        },
        files={"file": ("my data (1).csv", b"a,b,c,d,y\n1,2,3,4,0\n", "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/ui/runs?done=uploaded&key=my_data_1_.csv&dataset=my-data-1"
    )
    runtime = open_home(home)
    # The sanitised file name, in the upload's own folder.
    [key] = [k for k in runtime.store.list("data", "data/my-data-1/") if k.endswith(".csv")]
    source = keys.parse_source_key(key)
    assert (source.dataset, source.filename) == ("my-data-1", "my_data_1_.csv")
    manifest = load_manifest(runtime.store, "data", "my-data-1")
    assert manifest.target == "y" and manifest.positive == "1" and manifest.task == "binary"
    assert manifest.drop == ["b", "c", "d"] and manifest.learners == ["linear"]
    assert manifest.time_budget_s == 1
    assert runtime.store.head("data", key) is not None
    # The notification is queued: the runs page shows the upload at once, before any worker.
    page = client.get(response.headers["location"]).text
    # ... by the person's file name, the full key on hover; the notice names the file too.
    assert "Waiting for a worker" in page
    assert f'<code class="source" title="{key}">my_data_1_.csv</code>' in page
    notice = re.search(r'<p class="notice" role="status">(.*?)</p>', page)
    assert notice and notice.group(1).startswith("Uploaded my_data_1_.csv")
    assert source.upload_id is not None and source.upload_id not in notice.group(1)


def test_a_form_upload_is_streamed_to_the_store_never_read_whole(
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The form's file reaches the upload use case as a file on disk (streamed into the store
    # by put_file, its header read from the first 64 KiB), never as one bytes object: a big
    # upload must not cost its size in memory, several times over.
    import automlops.ui.upload as form_upload

    sources: list[object] = []
    real_upload = form_upload.upload

    def spy(store: Any, bucket: str, filename: str, source: Any, options: Any) -> Any:
        sources.append(source)
        return real_upload(store, bucket, filename, source, options)

    monkeypatch.setattr(form_upload, "upload", spy)
    body = b"a,b,y\n" + b"".join(b"%d,%d,%d\n" % (i, i * 7 % 13, i % 2) for i in range(60_000))
    home = tmp_path / "w"
    client = client_for(home)
    token = csrf_of(client, "/ui/upload")
    response = client.post(
        "/ui/upload",
        data={"csrf_token": token, "dataset": "big"},
        files={"file": ("big.csv", body, "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    [source] = sources
    assert isinstance(source, Path)
    assert not source.exists()  # the spool is gone once stored
    runtime = open_home(home)
    [key] = [k for k in runtime.store.list("data", "data/big/") if k.endswith("/big.csv")]
    assert runtime.store.get("data", key) == body
    assert load_manifest(runtime.store, "data", "big").target == "y"


def test_upload_detects_target_and_keeps_stored_options(
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    home = tmp_path / "w"
    client = client_for(home)
    token = csrf_of(client, "/ui/upload")
    files = {"file": ("t.csv", b"x,label\n1,a\n", "text/csv")}
    client.post(
        "/ui/upload",
        data={"csrf_token": token, "dataset": "t", "time_budget": "5", "learners": ["linear"]},
        files=files,
    )
    runtime = open_home(home)
    first = load_manifest(runtime.store, "data", "t")
    assert first.target == "label" and first.time_budget_s == 5
    client.post(
        "/ui/upload", data={"csrf_token": token, "dataset": "t", "positive": "a"}, files=files
    )
    second = load_manifest(runtime.store, "data", "t")
    assert second.time_budget_s == 5 and second.learners == ["linear"] and second.positive == "a"
    # Two uploads of t.csv: two objects, each in its upload's own folder, none replaced.
    stored = runtime.store.list("data", keys.source_key("t", ""))
    assert stored[-1] == "data/t/manifest.json" and len(stored) == 3
    assert [keys.parse_source_key(k).filename for k in stored[:2]] == ["t.csv", "t.csv"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dataset": "../etc"}, "dataset name"),
        ({"dataset": HOSTILE}, "dataset name"),
        ({"time_budget": "-3"}, "time budget"),
        ({"time_budget": "nan"}, "time budget"),
        ({"task": "clustering"}, "task must be"),
        ({"learners": ["pickle"]}, "unknown learner"),
        ({"keep": f"a, {HOSTILE}"}, "keep column(s)"),
    ],
)
def test_upload_refusals_are_explained_and_escaped(
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
    fields: dict[str, object],
    message: str,
) -> None:
    home = tmp_path / "w"
    client = client_for(home)
    token = csrf_of(client, "/ui/upload")
    response = client.post(
        "/ui/upload",
        data={"csrf_token": token, **fields},
        files={"file": ("f.csv", b"a,y\n1,0\n", "text/csv")},
    )
    assert response.status_code == 400
    assert message in response.text
    assert HOSTILE not in response.text
    assert open_home(home).store.list("data") == []


def test_a_refused_upload_refills_the_columns_to_keep(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(tmp_path / "w")
    response = client.post(
        "/ui/upload",
        data={"csrf_token": csrf_of(client, "/ui/upload"), "keep": "ag"},
        files={"file": ("f.csv", b"age,y\n1,0\n", "text/csv")},
    )
    assert response.status_code == 400 and "did you mean &#39;age&#39;?" in response.text
    assert '<input id="keep" name="keep" type="text" value="ag"' in response.text


def test_upload_without_file_too_large_or_without_token(
    tmp_path: Path,
    client_for: Callable[..., TestClient],
    open_home: Callable[[Path], LocalRuntime],
) -> None:
    home = tmp_path / "w"
    client = client_for(home)
    client.app.state.ui.max_upload_bytes = 1000
    token = csrf_of(client, "/ui/upload")
    empty = client.post("/ui/upload", data={"csrf_token": token}, files={"file": ("", b"")})
    assert empty.status_code == 400 and "Choose a CSV file" in empty.text
    big = client.post(
        "/ui/upload", data={"csrf_token": token}, files={"file": ("b.csv", b"a,y\n" * 1000)}
    )
    assert big.status_code == 413
    forged = client.post("/ui/upload", data={}, files={"file": ("h.csv", hostile_csv(5))})
    assert forged.status_code == 403
    assert open_home(home).store.list("data") == []
