"""Every path the README and docs/ name exists in the repository.

A newcomer follows them literally: a link to a moved file or an example that was renamed is a
dead end. Checked: Markdown link targets (relative, anchors stripped) and backticked paths that
start with one of the repository's top-level directories.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("."))

LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
# A backticked word that is a path in this repository, e.g. `examples/hello.yaml` or
# `tests/cluster/test_deploy.py::test_x`; placeholders and globs are not paths.
PATHLIKE = re.compile("^(?:" + "|".join(map(re.escape, TOP_LEVEL)) + r")/[\w./-]*$")


def _links(text: str) -> list[str]:
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(text)
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#")
    ]


def _code_paths(text: str) -> list[str]:
    found = []
    for span in CODE.findall(text):
        for word in span.split():
            word = word.split("::", 1)[0].rstrip(".,;:")
            if PATHLIKE.match(word):
                found.append(word)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_path_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = sorted(
        {link for link in _links(text) if link and not (doc.parent / link).exists()}
        | {path for path in _code_paths(text) if not (ROOT / path).exists()}
    )
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_no_doc_points_outside_the_repository() -> None:
    outside = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for link in _links(text):
            if link and not (doc.parent / link).resolve().is_relative_to(ROOT):
                outside.append(f"{doc.name}: {link}")
        # A path that only exists on the machine the docs were written on.
        outside += [f"{doc.name}: {m}" for m in re.findall(r"`(shared/[^`]+)`", text)]
    assert not outside


def test_the_checker_sees_a_missing_path(tmp_path: Path) -> None:
    text = "see [x](nothing/here.md) and `examples/no-such-file.yaml`, `examples/hello.yaml`"
    assert _links(text) == ["nothing/here.md"]
    assert _code_paths(text) == ["examples/no-such-file.yaml", "examples/hello.yaml"]


def test_kubectl_apply_f_never_meets_a_kustomization() -> None:
    # `kubectl apply -f DIR` sends kustomization.yaml as an object ("no matches for kind
    # Kustomization"); such a directory is applied with -k.
    wrong = []
    for doc in DOCS:
        for target in re.findall(r"kubectl apply[^`\n]*?-f\s+(\S+)", doc.read_text()):
            directory = ROOT / target.rstrip("/")
            if directory.is_dir() and (directory / "kustomization.yaml").exists():
                wrong.append(f"{doc.name}: kubectl apply -f {target}")
    assert not wrong


def test_reports_name_revisions_and_commands_not_this_machines_paths() -> None:
    # A report is read on other machines: paths are relative to the repository's root.
    machine = re.compile(r"(?<![\w.])/(?:work|home|root)/")
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in sorted((ROOT / "bench" / "results").glob("*"))
        if path.suffix in (".md", ".json")
        for match in [machine.search(path.read_text(encoding="utf-8"))]
        if match
    ]
    assert not found


def test_the_cluster_build_announces_the_time_the_readme_states() -> None:
    readme = re.search(
        r"first build of the Kubernetes binaries takes about\s+\*\*(\d+) minutes\*\*",
        (ROOT / "README.md").read_text(),
    )
    script = re.search(
        r"a cold build takes about (\d+) minutes", (ROOT / "hack" / "build-k8s.sh").read_text()
    )
    assert readme and script and readme.group(1) == script.group(1)
