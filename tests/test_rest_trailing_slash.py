"""A REST path written with a trailing slash (`/sessions/`) is answered with a redirect to the
path without it, by a relative `Location` that keeps the query: never a URL built from the
`Host` the client sent (issue 9, defect 7). A path that is not ours stays a 404."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import SessionFactory

HOSTILE = {"Host": "evil.example"}


def assert_no_host_echo(response: httpx.Response) -> None:
    for name, value in response.headers.items():
        assert "evil.example" not in value, (name, value)


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/sessions/", "/sessions"),
        ("/sessions/?limit=1&inbox_status=active", "/sessions?limit=1&inbox_status=active"),
        ("/openapi.json/", "/openapi.json"),
    ],
)
async def test_a_trailing_slash_redirects_relatively_whatever_the_host(
    client: httpx.AsyncClient, path: str, location: str
) -> None:
    response = await client.get(path, headers=HOSTILE)

    assert response.status_code == 307
    assert response.headers["location"] == location
    assert_no_host_echo(response)


async def test_a_session_path_with_a_trailing_slash_redirects_to_the_session(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    row = await make_session()
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, f"/sessions/{row['id']}/", headers=HOSTILE)
        assert response.status_code == 307
        assert response.headers["location"] == f"/sessions/{row['id']}"
        assert_no_host_echo(response)
    # Nothing was done at the slash path: the session is as it was.
    assert (await client.get(f"/sessions/{row['id']}")).json()["session"]["version"] == 1


async def test_a_client_that_follows_the_redirect_gets_the_resource(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    row = await make_session()

    response = await client.get("/sessions/", params={"limit": "5"}, follow_redirects=True)

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [str(row["id"])]
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize("path", ["/nope/", "/sessions/a/b/", "/sessionsx/"])
async def test_a_path_that_is_not_ours_stays_not_found(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=HOSTILE)

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/graphql/", "/healthz/", "/metrics/", "/nowhere/"])
async def test_other_paths_with_a_trailing_slash_are_not_found_never_redirected(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=HOSTILE)

    assert response.status_code == 404
    assert "location" not in response.headers
    assert_no_host_echo(response)
