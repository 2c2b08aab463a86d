"""/api/docs works offline: the page and everything it loads come from this service, none from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_page_names_no_other_host_and_its_assets_answer(api: TestClient) -> None:
    page = api.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.findall(r"https?://", html) == [], "the docs page must load nothing from another host"
    assert "url: '/api/openapi.json'" in html
    assert '"validatorUrl": null' in html  # Swagger UI's default validator is an outside service
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"/api/docs-assets/swagger-ui-bundle.js", "/api/docs-assets/swagger-ui.css"} <= set(sources)
    for source in sources:
        assert source.startswith("/api/docs-assets/"), source
        asset = api.get(source)
        assert asset.status_code == 200 and len(asset.content) > 1000, source
    js = api.get("/api/docs-assets/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in js.content
    css = api.get("/api/docs-assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css") and b".swagger-ui" in css.content


def test_only_the_docs_assets_are_served(api: TestClient) -> None:
    for name in ("core.py", "..%2Fcore.py", "redoc.standalone.js", "nope.js"):
        assert api.get(f"/api/docs-assets/{name}").status_code == 404, name
    assert api.get("/api/docs/oauth2-redirect").status_code == 200
    schema = api.get("/api/openapi.json").json()
    assert not [path for path in schema["paths"] if "docs" in path]


def test_docs_page_is_not_in_the_openapi_of_the_api(api: TestClient) -> None:
    assert api.get("/docs").status_code == 404  # only under /api, like every route
