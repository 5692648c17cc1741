"""The real template.tpl under the Node.js harness (sgtm.md SGTM-42, SGTM-44).

(a) Every ___TESTS___ scenario passes in "tests" mode.
(b) In "run" mode, for every fixture with a `template` block, the template posts exactly the fixture's body (numbers
    compared by value) to a local recording HTTP server, with the expected headers, and sets the expected cookie.
    `<gateway>` is the recording server's base URL, added to the send_http allowlist as SGTM-40 does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.sgtm.distribution import join_sections, served_template, split_sections, substitute

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / "connectors" / "sgtm" / "template.tpl"
HARNESS = Path(__file__).resolve().parent / "template_harness.mjs"
SHARED = Path(os.environ.get("MBUZZ_SHARED_DIR", Path(__file__).resolve().parents[5] / "shared"))
FIXTURES = SHARED / "fixtures" / "sgtm"


def _node_version() -> tuple[int, ...] | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


NODE_VERSION = _node_version()
if os.environ.get("CI") and (NODE_VERSION is None or NODE_VERSION < (18,)):
    raise RuntimeError("CI: Node.js >= 18 is required for the sGTM template tests (sgtm.md SGTM-44)")
pytestmark = pytest.mark.skipif(
    NODE_VERSION is None or NODE_VERSION < (18,),
    reason="Node.js >= 18 is not on PATH: the sGTM template harness tests (SGTM-42) are skipped (SGTM-44)",
)









def run_harness(mode: str, payload: dict[str, Any], template: Path | None = None) -> dict[str, Any]:
    command = ["node", str(HARNESS), mode] + ([str(template)] if template else [])
    proc = subprocess.run(command, input=json.dumps(payload), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def same(actual: Any, expected: Any) -> bool:
    """JSON equality with numbers compared by value (249 == 249.0) and booleans never equal to numbers."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float | Decimal) and isinstance(expected, int | float | Decimal):
        return Decimal(str(actual)) == Decimal(str(expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected, strict=True))
    return type(actual) is type(expected) and actual == expected




# --------------------------------------------------------------------------------------------------------------------
# A recording gateway stand-in
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Recorder:
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture()
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                rec.requests.append(
                    {"method": "POST", "path": self.path, "headers": dict(self.headers.items()), "body_raw": raw}
                )
            try:
                visitor_id = json.loads(raw).get("visitor_id")
            except (ValueError, AttributeError):
                visitor_id = None
            answer = json.dumps({"status": "accepted", "visitor_id": visitor_id}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------------------------
# (a) ___TESTS___
# --------------------------------------------------------------------------------------------------------------------


def test_template_tests_section_passes() -> None:
    sections = dict(split_sections(TEMPLATE.read_text(encoding="utf-8")))
    tests = yaml.safe_load(sections["TESTS"])
    result = run_harness("tests", tests)
    failures = {s["name"]: s.get("error", "") for s in result["scenarios"] if not s["passed"]}
    assert not failures, json.dumps(failures, indent=2)
    assert len(result["scenarios"]) == 22
    assert result["passed"] == 22


def test_tests_mode_reports_a_failing_assertion() -> None:
    tests = {
        "setup": "mock('getEventData', function (key) { return undefined; });",
        "scenarios": [
            {"name": "fails", "code": "runCode({});\nassertApi('gtmOnSuccess').wasCalled();"},
            {"name": "passes", "code": "runCode({});\nassertApi('gtmOnFailure').wasCalled();"},
        ],
    }
    result = run_harness("tests", tests)
    assert [(s["name"], s["passed"]) for s in result["scenarios"]] == [("fails", False), ("passes", True)]


# --------------------------------------------------------------------------------------------------------------------
# (b) "run" mode against a recording server
# --------------------------------------------------------------------------------------------------------------------


def template_fixture_ids() -> list[str]:
    ids = []
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        if "template" in json.loads(path.read_text(encoding="utf-8")):
            ids.append(path.stem)
    return ids


def scenario_input(fixture: dict[str, Any], base_url: str) -> dict[str, Any]:
    block = fixture["template"]
    return {
        "params": substitute(block["params"], base_url),
        "event_data": block["event_data"],
        "request": block.get("request", {}),
        "now_ms": block.get("now_ms", fixture.get("now_ms")),
        "container": block.get("container", {}),
    }


def test_fixtures_with_a_template_block_exist() -> None:
    assert "F14" in template_fixture_ids()


@pytest.mark.parametrize("fixture_id", template_fixture_ids())
def test_template_sends_the_fixture_body(fixture_id: str, recorder: Recorder, tmp_path: Path) -> None:
    fixture = json.loads((FIXTURES / f"{fixture_id}.json").read_text(encoding="utf-8"))
    expected = substitute(
        json.loads((FIXTURES / f"{fixture_id}.expected.json").read_text(encoding="utf-8"))["template"],
        recorder.base_url,
    )
    template = tmp_path / "template.tpl"
    template.write_text(served_template(recorder.base_url), encoding="utf-8")

    result = run_harness("run", scenario_input(fixture, recorder.base_url), template)

    assert "errors" not in result, result.get("errors")
    assert result["outcome"] == expected["outcome"]
    assert len(result["http_requests"]) == len(expected["http_requests"])
    assert len(recorder.requests) == len(expected["http_requests"])
    for sent, received, want in zip(result["http_requests"], recorder.requests, expected["http_requests"], strict=True):
        # What the template handed to sendHttpRequest.
        assert sent["method"] == want["method"]
        assert sent["url"] == want["url"]
        assert sent["headers"] == want["headers"]
        assert sent["timeout"] == want["timeout"]
        assert same(sent["body"], want["body"]), json.dumps(sent["body"], indent=2)
        # What actually arrived over HTTP.
        assert received["method"] == want["method"]
        assert recorder.base_url + received["path"] == want["url"]
        body = json.loads(received["body_raw"], parse_float=Decimal)
        assert same(body, want["body"]), json.dumps(json.loads(received["body_raw"]), indent=2)
        headers = {k.lower(): v for k, v in received["headers"].items()}
        for name, value in want["headers"].items():
            assert headers[name.lower()] == value, name
    assert result["http_responses"][0]["status"] == 202
    assert result["cookies_set"] == expected["cookies_set"]


def test_f14_headers_and_cookie(recorder: Recorder, tmp_path: Path) -> None:
    fixture = json.loads((FIXTURES / "F14.json").read_text(encoding="utf-8"))
    template = tmp_path / "template.tpl"
    template.write_text(served_template(recorder.base_url), encoding="utf-8")
    result = run_harness("run", scenario_input(fixture, recorder.base_url), template)
    assert result["outcome"] == "gtmOnSuccess"
    headers = {k.lower(): v for k, v in recorder.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer pk_sgtm_live_8d2e4f6a1b3c5d7e9f0a2b4c6d8e0f1a"
    assert headers["user-agent"] == "mbuzz-sgtm/2.0.0"
    assert headers["content-type"] == "application/json"
    visitor = "2044fc0995811b622a40772d1d8a0f469a0e021e5ef6bdaabf4cde9a818ee1e3"
    assert result["cookies_set"] == [
        {
            "name": "_mbuzz_vid",
            "value": visitor,
            "options": {
                "domain": "auto",
                "path": "/",
                "max-age": 63072000,
                "secure": True,
                "samesite": "Lax",
                "httpOnly": False,
            },
        }
    ]
    assert result["logs"] == []


def test_allow_urls_input_is_equivalent_to_the_served_template(recorder: Recorder) -> None:
    fixture = json.loads((FIXTURES / "F14.json").read_text(encoding="utf-8"))
    scenario = scenario_input(fixture, recorder.base_url) | {"allow_urls": [f"{recorder.base_url}/*"]}
    result = run_harness("run", scenario)
    assert result["outcome"] == "gtmOnSuccess"
    assert len(recorder.requests) == 1


def test_url_outside_send_http_is_refused(recorder: Recorder) -> None:
    fixture = json.loads((FIXTURES / "F14.json").read_text(encoding="utf-8"))
    result = run_harness("run", scenario_input(fixture, recorder.base_url))  # committed template: *.mbuzz.co only
    assert result["outcome"] == "error"
    assert any("send_http" in error for error in result["errors"])
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("require('getEventData')('page_hostname'); data.gtmOnSuccess();", "read_event_data"),
        ("require('getAllEventData')(); data.gtmOnSuccess();", "require('getAllEventData')"),
        ("require('getCookieValues')('_ga'); data.gtmOnSuccess();", "get_cookies"),
        ("require('getRequestHeader')('cookie'); data.gtmOnSuccess();", "read_request"),
        ("require('setCookie')('_other', 'x', {}); data.gtmOnSuccess();", "set_cookies"),
        ("require('sendHttpRequest')('https://evil.example/x', function () {}, {}, ''); data.gtmOnSuccess();",
         "send_http"),
    ],
)  # fmt: skip
def test_shims_enforce_permissions(code: str, message: str, tmp_path: Path) -> None:
    sections = [
        (name, code if name == "SANDBOXED_JS_FOR_SERVER" else body)
        for name, body in split_sections(TEMPLATE.read_text(encoding="utf-8"))
    ]
    template = tmp_path / "template.tpl"
    template.write_text(join_sections(sections), encoding="utf-8")
    result = run_harness("run", {"params": {}, "event_data": {"page_hostname": "x"}, "request": {}}, template)
    assert result["outcome"] == "error"
    assert any(message in error for error in result["errors"]), result["errors"]
