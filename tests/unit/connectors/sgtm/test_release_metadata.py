"""metadata.yaml, which the GTM Community Template Gallery reads to publish versions (sgtm.md SGTM-1, SGTM-41;
the release procedure is docs/sgtm.md SGTM-1-D1).

The Gallery reads `versions` newest first and publishes, for each entry, the template.tpl of the commit `sha`. A short
or mistyped sha, a sha whose template.tpl is another version, or a template change without its entry publishes the
wrong file or nothing at all. These checks catch that before the push.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
CONNECTOR = ROOT / "connectors" / "sgtm"
TEMPLATE_PATH = "connectors/sgtm/template.tpl"
PLACEHOLDER_SHA = "0" * 40  # an entry whose release commit is not recorded yet (SGTM-1-D1 step 2)
SHA = re.compile(r"[0-9a-f]{40}")
CODE_VERSION = re.compile(r"^const TEMPLATE_VERSION = '(\d+\.\d+\.\d+)';$", re.MULTILINE)
NOTES_VERSION = re.compile(r"(\d+\.\d+\.\d+): \S")


def load_versions() -> list[dict[str, Any]]:
    metadata = yaml.safe_load((CONNECTOR / "metadata.yaml").read_text(encoding="utf-8"))
    assert set(metadata) == {"homepage", "documentation", "versions"}, sorted(metadata)
    versions = metadata["versions"]
    assert isinstance(versions, list) and versions, "versions must be a non-empty list"
    return versions


def notes_version(entry: dict[str, Any]) -> str:
    match = NOTES_VERSION.match(str(entry.get("changeNotes", "")))
    assert match, f"changeNotes must start with '<version>: ', got {entry.get('changeNotes')!r}"
    return match.group(1)


def code_version(template_text: str) -> str | None:
    match = CODE_VERSION.search(template_text)
    return match.group(1) if match else None


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=False)


def release_problem(sha: str, version: str) -> str | None:
    """Why `sha` is not the commit that holds template.tpl `version`, or None when it is."""
    if git("cat-file", "-e", f"{sha}^{{commit}}").returncode != 0:
        return f"{sha} is not a commit of this repository"
    shown = git("show", f"{sha}:{TEMPLATE_PATH}")
    if shown.returncode != 0:
        return f"commit {sha} has no {TEMPLATE_PATH}"
    found = code_version(shown.stdout)
    if found != version:
        return f"commit {sha} holds template version {found}, not {version}"
    return None


def full_history() -> bool:
    probe = git("rev-parse", "--is-shallow-repository")
    return probe.returncode == 0 and probe.stdout.strip() == "false"


# --------------------------------------------------------------------------------------------------------------------


def test_SGTM1_metadata_has_the_shape_the_gallery_reads() -> None:
    versions = load_versions()
    for entry in versions:
        assert set(entry) == {"sha", "changeNotes"}, entry
        # Quoted in the file: an unquoted all-digit sha would be read as a number.
        assert isinstance(entry["sha"], str) and SHA.fullmatch(entry["sha"]), f"not a full 40-hex sha: {entry['sha']!r}"
        assert isinstance(entry["changeNotes"], str) and entry["changeNotes"].strip()
        notes_version(entry)
    shas = [entry["sha"] for entry in versions]
    assert len(shas) == len(set(shas)), "one entry per release commit"


def test_SGTM1_D1_the_newest_entry_is_this_checkout_s_template_and_entries_are_newest_first() -> None:
    versions = load_versions()
    current = code_version((CONNECTOR / "template.tpl").read_text(encoding="utf-8"))
    assert current is not None, "template.tpl declares no TEMPLATE_VERSION"
    assert notes_version(versions[0]) == current, "a template version change needs its metadata.yaml entry on top"
    order = [tuple(int(part) for part in notes_version(entry).split(".")) for entry in versions]
    assert order == sorted(order, reverse=True) and len(order) == len(set(order)), order


def test_SGTM1_D1_only_the_newest_entry_may_wait_for_its_release_commit() -> None:
    placeholders = [i for i, entry in enumerate(load_versions()) if entry["sha"] == PLACEHOLDER_SHA]
    assert placeholders in ([], [0]), f"placeholder sha in entries {placeholders}: an older release lost its commit"


def test_SGTM1_D1_the_sha_check_tells_a_release_commit_from_others() -> None:
    """The check below is only as good as release_problem(): prove it on a real commit of this repository."""
    if not full_history():
        pytest.skip("shallow or missing git history: release commits cannot be looked up")
    last_change = git("log", "-1", "--format=%H", "--", TEMPLATE_PATH).stdout.strip()
    assert SHA.fullmatch(last_change)
    version = code_version(git("show", f"{last_change}:{TEMPLATE_PATH}").stdout)
    assert version is not None
    assert release_problem(last_change, version) is None
    assert release_problem(last_change, "0.0.1") == f"commit {last_change} holds template version {version}, not 0.0.1"
    assert release_problem("f" * 40, version) == f"{'f' * 40} is not a commit of this repository"


def released_entries() -> list[tuple[str, str]]:
    return [(entry["sha"], notes_version(entry)) for entry in load_versions() if entry["sha"] != PLACEHOLDER_SHA]


@pytest.mark.parametrize(("sha", "version"), released_entries())
def test_SGTM1_D1_each_release_sha_is_the_commit_holding_that_template_version(sha: str, version: str) -> None:
    if not full_history():
        pytest.skip("shallow or missing git history: release commits cannot be looked up")
    assert release_problem(sha, version) is None
