"""The custom-pixel snippet for shops connected without the app (shopify.md SHP-77, SHP-79).

A custom pixel pasted under Settings → Customer events cannot import `@shopify/web-pixels-extension` and has no
`settings`; it gets the Standard API as globals instead. Rather than keep a second copy of the pixel, the snippet is
generated from the extension source (SHP-92): its single import line is replaced by an adapter defining `register`,
which calls the pixel with those globals and the installation's settings written into the code. The snippet
therefore posts to the same endpoint with the same envelope as the app pixel (tests/unit/connectors/shopify run
both under the same harness).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["IMPORT_LINE", "PIXEL_SOURCE", "custom_pixel_snippet"]

PIXEL_SOURCE = Path(__file__).resolve().parent / "app" / "extensions" / "multibuzz-pixel" / "src" / "index.js"
IMPORT_LINE = "import {register} from '@shopify/web-pixels-extension';"

# Characters that are valid inside a JSON string but could end or confuse the surrounding code if the snippet is
# ever embedded in HTML (`</script>`, `<!--`) or read by an older JS parser (U+2028/U+2029, escaped by ensure_ascii).
_JS_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _js_literal(value: dict[str, str]) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    for char, escape in _JS_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def custom_pixel_snippet(account_id: str, ingest_key: str, endpoint: str) -> str:
    """The custom-pixel code for one installation: the extension source with its import line swapped for an adapter.

    The settings are inlined as a JSON literal (escaped for any script context), so no value can break out of it.
    """
    for name, value in (("account_id", account_id), ("ingest_key", ingest_key), ("endpoint", endpoint)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    source = PIXEL_SOURCE.read_text(encoding="utf-8")
    lines = source.split("\n")
    hits = [i for i, line in enumerate(lines) if line.rstrip("\r") == IMPORT_LINE]
    if len(hits) != 1:
        raise RuntimeError(f"{PIXEL_SOURCE} must contain the line {IMPORT_LINE!r} exactly once (SHP-92)")
    settings = _js_literal({"accountID": account_id, "ingestKey": ingest_key, "endpoint": endpoint})
    adapter = (
        "// Multibuzz custom pixel (generated; set its customer privacy permission to Analytics). Settings inlined.\n"
        "const register = (pixel) => pixel({analytics, browser, init, settings: " + settings + ",\n"
        "  customerPrivacy: typeof customerPrivacy !== 'undefined' ? customerPrivacy\n"
        "    : (typeof api !== 'undefined' && api ? api.customerPrivacy : undefined)});"
    )
    lines[hits[0]] = adapter
    return "\n".join(lines)
