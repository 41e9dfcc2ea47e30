"""GET / serves the self-contained page; GET /openapi.json serves the document docs/openapi.json copies."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS_OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_page_is_self_contained_html_under_a_strict_csp(api):
    response = api.get("/")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.body.decode()
    # Every inline script and style carries the nonce the CSP allows, and nothing loads from elsewhere.
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["content-security-policy"]).group(1)
    assert html.count(f'nonce="{nonce}"') == 2
    assert "{{nonce}}" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "connect-src 'self'" in response.headers["content-security-policy"]


def test_the_page_posts_to_a_relative_classify_url(api):
    html = api.get("/").body.decode()

    assert 'endpoint("classify")' in html
    assert 'fetch("/' not in html


def test_the_page_shows_not_sure_instead_of_a_bar_for_an_unknown_verdict(api):
    html = api.get("/").body.decode()

    assert 'data.verdict === "unknown"' in html
    assert '"Not sure"' in html and '"this looks like none of: "' in html


def test_each_request_gets_a_fresh_nonce(api):
    first = api.get("/").headers["content-security-policy"]
    second = api.get("/").headers["content-security-policy"]

    assert first != second


def test_the_served_document_is_the_one_in_docs(api):
    served = api.get("/openapi.json")

    assert served.status == 200
    assert served.json() == json.loads(DOCS_OPENAPI.read_text()), (
        "docs/openapi.json is stale: regenerate it with `.venv/bin/python -m imgclf_api > docs/openapi.json`")


def test_the_document_has_exactly_the_templates_routes(api, stack_template):
    # The template's Api events are the routes; the document must describe each (except itself) and no other.
    document = api.get("/openapi.json").json()
    template_routes = {(r.method, re.sub(r"\{(\w+)\+?\}", r"{\1}", r.path))
                       for r in stack_template.functions["ApiFunction"].api_routes}
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}

    assert documented == template_routes - {("GET", "/openapi.json")}


def test_management_routes_require_sigv4_and_public_ones_do_not(api, stack_template):
    document = api.get("/openapi.json").json()
    public = {(r.method, re.sub(r"\{(\w+)\+?\}", r"{\1}", r.path))
              for r in stack_template.functions["ApiFunction"].api_routes if r.public}

    for path, item in document["paths"].items():
        for method, operation in item.items():
            security = operation.get("security", document["security"])
            assert ({} in security) == ((method.upper(), path) in public), (method, path)
