"""Concurrent registrations against a real server: none lost, none doubled, no 5xx."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.integration.test_api_environments import SKLEARN
from tests.support import authed


def test_fifty_concurrent_registrations_get_versions_1_to_50(server: str) -> None:
    url = f"{server}/api/workspaces/team/environments/busy/versions"

    def one(i: int) -> httpx.Response:
        return authed.post(url, json={**SKLEARN, "description": f"registration {i}"}, timeout=60)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(one, range(50)))
    assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses if r.status_code != 201]
    versions = sorted(int(r.json()["version"]) for r in responses)
    assert versions == list(range(1, 51))
    stored = authed.get(url, params={"$top": 1000}).json()["value"]
    assert sorted(int(e["version"]) for e in stored) == list(range(1, 51))
    descriptions = {e["version"]: e["definition"]["description"] for e in stored}
    by_response = {r.json()["version"]: r.json()["definition"]["description"] for r in responses}
    assert descriptions == by_response
