"""The template as a deployment serves it (sgtm.md SGTM-39, SGTM-40).

The served file differs from the committed one in exactly two places: the `endpointUrl` default becomes
`{public_url}/sgtm/v1/collect`, and `{public_url}/*` is appended to the `send_http` URLs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["TEMPLATE", "join_sections", "served_filename", "served_template", "split_sections", "substitute",
           "template_version"]

TEMPLATE = Path(__file__).resolve().parent / "template.tpl"
_HEADER = re.compile(r"^___([A-Z_]+)___$", re.MULTILINE)


def split_sections(text: str) -> list[tuple[str, str]]:
    matches = list(_HEADER.finditer(text))
    return [
        (m.group(1), text[m.end(): matches[i + 1].start() if i + 1 < len(matches) else len(text)].strip("\n"))
        for i, m in enumerate(matches)
    ]


def join_sections(sections: list[tuple[str, str]]) -> str:
    return "".join(f"___{name}___\n\n{body}\n\n\n" for name, body in sections).rstrip("\n") + "\n"


def template_version(template: Path = TEMPLATE) -> str:
    """The template's own version (`const TEMPLATE_VERSION = '2.0.0';` in its code), for the served file name."""
    found = re.search(r"const TEMPLATE_VERSION = '([0-9]+\.[0-9]+\.[0-9]+)';", template.read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError(f"{template} declares no TEMPLATE_VERSION")
    return found.group(1)


def served_filename(template: Path = TEMPLATE) -> str:
    """SGTM-39: the attachment's name, `multibuzz-sgtm-<version>.tpl`."""
    return f"multibuzz-sgtm-{template_version(template)}.tpl"


def served_template(public_url: str, template: Path = TEMPLATE) -> str:
    out = []
    for name, body in split_sections(template.read_text(encoding="utf-8")):
        if name == "TEMPLATE_PARAMETERS":
            params = json.loads(body)
            for param in params:
                if param.get("name") == "endpointUrl":
                    param["defaultValue"] = f"{public_url}/sgtm/v1/collect"
            body = json.dumps(params, indent=2)
        elif name == "SERVER_PERMISSIONS":
            permissions = json.loads(body)
            for entry in permissions:
                if entry["instance"]["key"]["publicId"] == "send_http":
                    for param in entry["instance"]["param"]:
                        if param["key"] == "urls":
                            param["value"]["listItem"].append({"type": 1, "string": f"{public_url}/*"})
            body = json.dumps(permissions, indent=2)
        out.append((name, body))
    return join_sections(out)


def substitute(value: Any, base_url: str) -> Any:
    """Fixture placeholders: `<gateway>` is the base URL of the gateway under test."""
    if isinstance(value, str):
        return value.replace("<gateway>", base_url)
    if isinstance(value, list):
        return [substitute(v, base_url) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, base_url) for k, v in value.items()}
    return value
