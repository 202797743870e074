"""Argument parsing of the steprun command and how `run` arguments become a StepRun."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steprun.cli.main import build_parser, main, split_dashdash
from steprun.cli.operator import operator_config
from steprun.cli.run import request_from_args
from steprun.cli.spec_args import (
    Manifest,
    SpecArgumentError,
    build_run_request,
    load_manifest,
    parse_inputs,
    parse_secret,
    split_run_words,
)
from steprun.config import OperatorConfig

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    head, tail = split_dashdash(argv)
    args = build_parser().parse_args(head)
    if tail is not None:
        args.after_dashdash = tail
    return args


def run_spec(*argv: str) -> dict[str, Any]:
    request = request_from_args(parse("run", *argv))
    return request.spec.to_api()


# ---------------------------------------------------------------------- global flags


@pytest.mark.parametrize(
    "argv",
    [
        ("-n", "ci", "--kubeconfig", "/k", "--context", "dev", "get", "x"),
        ("get", "x", "-n", "ci", "--kubeconfig", "/k", "--context", "dev"),
        ("--kubeconfig", "/k", "get", "-n", "ci", "x", "--context", "dev"),
    ],
)
def test_global_flags_go_before_or_after_the_command(argv: tuple[str, ...]) -> None:
    args = parse(*argv)
    assert (args.namespace, args.kubeconfig, args.context, args.names) == ("ci", "/k", "dev", ["x"])


def test_global_flags_default_to_none() -> None:
    args = parse("list")
    assert (args.namespace, args.kubeconfig, args.context) == (None, None, None)


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = [
        "run",
        "get",
        "list",
        "logs",
        "wait",
        "cancel",
        "delete",
        "render",
        "operator",
        "completion",
    ]
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([command, "--help"])
        assert exited.value.code == 0
        assert "examples:" in capsys.readouterr().out, command


def test_arguments_after_dashdash_are_only_for_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["get", "x", "--", "y"])
    assert exited.value.code == 2
    assert "no arguments after --" in capsys.readouterr().err


def test_split_dashdash_keeps_later_dashdashes_in_the_command() -> None:
    assert split_dashdash(["run", "--", "sh", "--", "x"]) == (["run"], ["sh", "--", "x"])
    assert split_dashdash(["list"]) == (["list"], None)


# ---------------------------------------------------------------------- run: name and command


def test_run_with_image_and_command() -> None:
    spec = run_spec("--image", "busybox:1.36", "--", "sh", "-c", "echo hi")
    assert spec["image"] == "busybox:1.36"
    assert spec["command"] == ["sh", "-c", "echo hi"]
    request = request_from_args(parse("run", "--image", "busybox:1.36", "--", "true"))
    assert (request.name, request.generate_name) == (None, "busybox-")


def test_run_words_without_dashdash_are_the_command() -> None:
    request = request_from_args(parse("run", "--image", "busybox", "echo", "hi"))
    assert request.spec.command == ["echo", "hi"] and request.name is None


def test_run_name_before_dashdash() -> None:
    request = request_from_args(parse("run", "hello", "--image", "busybox", "--", "echo", "hi"))
    assert request.name == "hello" and request.spec.command == ["echo", "hi"]


def test_run_name_with_script() -> None:
    request = request_from_args(parse("run", "hello", "--image", "busybox", "--script", "echo"))
    assert request.name == "hello" and request.spec.script == "echo"


@pytest.mark.parametrize(
    ("before", "after", "has_source", "expected"),
    [
        (["n"], ["c", "d"], False, ("n", ["c", "d"])),
        ([], ["c"], False, (None, ["c"])),
        (["c", "d"], None, False, (None, ["c", "d"])),
        (["n"], None, True, ("n", [])),
        ([], None, True, (None, [])),
    ],
)
def test_split_run_words(
    before: list[str],
    after: list[str] | None,
    has_source: bool,
    expected: tuple[str | None, list[str]],
) -> None:
    assert split_run_words(before, after, has_source=has_source) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ("a", "b", "--image", "x", "--", "c"),  # two names
        ("--image", "x", "--script", "s", "--", "c"),  # command and script
        ("a", "b", "--image", "x", "--script", "s"),  # command words with a script
        ("--script", "echo"),  # a local step without an image
        ("--image", "x", "--env", "NOEQUALS"),
        ("--image", "x", "--secret", "TOKEN=nokey"),
        ("--image", "x", "--input", "n:=not json"),
        ("--image", "x", "--timeout", "0"),
        ("n", "--name", "m", "--image", "x", "--script", "s"),
        ("--image", "x", "-f", "/does/not/exist"),
    ],
)
def test_bad_run_arguments_are_refused_with_a_message(argv: tuple[str, ...]) -> None:
    with pytest.raises((SpecArgumentError, OSError)) as raised:
        request_from_args(parse("run", *argv))
    assert str(raised.value)


# ---------------------------------------------------------------------- run: spec fields


def test_run_flags_fill_the_spec() -> None:
    spec = run_spec(
        "--image",
        "alpine",
        "--script",
        "env",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--input",
        "branch=main",
        "--input",
        "n:=3",
        "--input",
        'tags:=["a"]',
        "--secret",
        "TOKEN=gh/token",
        "--secret",
        "id_rsa=ssh/key:file",
        "--timeout",
        "60",
        "--retries",
        "2",
    )
    assert spec["env"] == {"A": "1", "B": "x=y"}
    assert spec["context"]["inputs"] == {"branch": "main", "n": 3, "tags": ["a"]}
    assert spec["context"]["secrets"] == [
        {"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}, "as": "env"},
        {"name": "id_rsa", "secretKeyRef": {"name": "ssh", "key": "key"}, "as": "file"},
    ]
    assert spec["timeoutSeconds"] == 60 and spec["retries"]["limit"] == 2


def test_parse_inputs_and_secrets() -> None:
    assert parse_inputs(["a=1", "b:=1", "c:=null", "d=", 'e:={"x": [1]}']) == {
        "a": "1",
        "b": 1,
        "c": None,
        "d": "",
        "e": {"x": [1]},
    }
    assert parse_secret("K=s.name/key.json:env")["secretKeyRef"] == {
        "name": "s.name",
        "key": "key.json",
    }


def test_flags_are_layered_over_a_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(
        """
apiVersion: steprun.dev/v1alpha1
kind: StepRun
metadata: {name: from-file, namespace: ci, labels: {team: web}}
spec:
  image: busybox
  command: [sh, -c]
  args: [echo hi]
  env: {A: "1", B: "2"}
  context:
    inputs: {x: 1}
    secrets: [{name: TOKEN, secretKeyRef: {name: old, key: k}}]
  retries: {limit: 1, backoffSeconds: 3}
"""
    )
    request = request_from_args(
        parse(
            "run",
            "-f",
            str(manifest),
            "--env",
            "B=3",
            "--input",
            "y=2",
            "--secret",
            "TOKEN=new/k",
            "--retries",
            "4",
            "--script",
            "echo bye",
        )
    )
    spec = request.spec.to_api()
    assert (request.name, request.namespace, request.labels) == ("from-file", "ci", {"team": "web"})
    assert spec["env"] == {"A": "1", "B": "3"}
    assert spec["context"]["inputs"] == {"x": 1, "y": "2"}
    assert [s["secretKeyRef"]["name"] for s in spec["context"]["secrets"]] == ["new"]
    assert spec["retries"] == {"limit": 4, "backoffSeconds": 3}
    assert spec["script"] == "echo bye" and "command" not in spec and "args" not in spec


def test_flags_win_over_manifest_name_and_namespace() -> None:
    manifest = Manifest({"name": "file", "namespace": "ns-file"}, {"image": "busybox"})
    request = build_run_request(manifest=manifest, name="flag", namespace="ns-flag")
    assert (request.name, request.namespace) == ("flag", "ns-flag")
    generated = build_run_request(manifest=Manifest({"generateName": "g-"}, {"image": "busybox"}))
    assert (generated.name, generated.generate_name) == (None, "g-")


def test_a_manifest_may_be_just_a_spec() -> None:
    manifest = load_manifest("image: busybox\nscript: echo\n")
    assert manifest == Manifest({}, {"image": "busybox", "script": "echo"})


def test_a_manifest_may_carry_other_objects() -> None:
    manifest = load_manifest((REPO / "examples" / "secrets-and-inputs.yaml").read_text())
    assert manifest.metadata["name"] == "secrets-and-inputs"
    assert manifest.skipped == ("Secret example-credentials",)
    request = build_run_request(manifest=manifest)
    assert request.skipped == ("Secret example-credentials",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a: [",
        "---\nimage: a\n---\nimage: b\n",
        "- 1\n",
        "kind: Pod\nspec: {}\n",
        "kind: StepRun\nspec: {}\n---\nkind: StepRun\nspec: {}\n",
    ],
)
def test_bad_manifests(text: str) -> None:
    with pytest.raises(SpecArgumentError):
        load_manifest(text)


def test_invalid_spec_fields_are_reported_by_path() -> None:
    with pytest.raises(SpecArgumentError, match=r"retries\.limit"):
        build_run_request(manifest=Manifest({}, {"image": "b", "retries": {"limit": -1}}))
    with pytest.raises(SpecArgumentError, match="script cannot be combined"):
        build_run_request(manifest=Manifest({}, {"image": "b", "script": "x", "args": ["y"]}))


# ---------------------------------------------------------------------- operator flags


def test_operator_namespaces() -> None:
    base = OperatorConfig(namespaces=["from-env"])
    assert operator_config(parse("operator", "-n", "a", "-n", "b"), base).namespaces == ["a", "b"]
    assert operator_config(parse("operator", "-A"), base).namespaces == []
    assert operator_config(parse("-n", "g", "operator"), base).namespaces == ["g"]
    assert operator_config(parse("operator"), base).namespaces == ["from-env"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "-A", "-n", "x"])


# ---------------------------------------------------------------------- run: workspaces


def test_workspace_flags_map_to_spec_workspaces() -> None:
    spec = run_spec(
        "--image",
        "busybox",
        "--script",
        "ls",
        "--workflow",
        "build",
        "--run-id",
        "42",
        "--workspace",
        "name=src,storage=2Gi,accessMode=ReadWriteMany,storageClassName=fast,mountPath=/src",
        "--workspace",
        "name=cache,claimName=ci-cache,subPath=build-42,readOnly",
        "--workspace",
        "name=tmp,emptyDir,sizeLimit=1Gi",
    )
    assert spec["context"]["workflow"] == {"name": "build", "runId": "42"}
    assert spec["workspaces"] == [
        {
            "name": "src",
            "mountPath": "/src",
            "readOnly": False,
            "volumeClaimTemplate": {
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "2Gi"}},
                    "storageClassName": "fast",
                }
            },
        },
        {
            "name": "cache",
            "subPath": "build-42",
            "readOnly": True,
            "persistentVolumeClaim": {"claimName": "ci-cache"},
        },
        {"name": "tmp", "readOnly": False, "emptyDir": {"sizeLimit": "1Gi"}},
    ]


def test_workspace_flags_replace_manifest_workspaces_by_name(tmp_path: Path) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(
        "image: busybox\n"
        "script: ls\n"
        "workspaces:\n"
        "  - {name: src, emptyDir: {}}\n"
        "  - {name: out, emptyDir: {}}\n"
    )
    spec = run_spec("-f", str(manifest), "--workspace", "name=src,claimName=shared")
    assert [(w["name"], sorted(w)) for w in spec["workspaces"]] == [
        ("src", ["name", "persistentVolumeClaim", "readOnly"]),
        ("out", ["emptyDir", "name", "readOnly"]),
    ]


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("claimName=x", "give name=NAME"),
        ("name=a", "exactly one of"),
        ("name=a,claimName=x,emptyDir", "exactly one of"),
        ("name=a,claimName=x,sizeLimit=1Gi", "does not apply"),
        ("name=a,size=1Gi", "unknown key 'size'"),
        ("name=a,claimName", "needs a value"),
        ("name=a,storage=1Gi", "context.workflow"),
        ("name=a,emptyDir,subPath=../x", "subPath"),
    ],
)
def test_bad_workspace_flags_say_what_to_fix(flag: str, words: str) -> None:
    with pytest.raises(SpecArgumentError, match=re.escape(words)):
        request_from_args(parse("run", "--image", "x", "--script", "s", "--workspace", flag))


def test_building_the_parser_loads_no_heavy_package() -> None:
    """`steprun --help` and completion answer without the models, YAML or the Kubernetes
    client (bench/cli_startup.py measures what that is worth): checked in a fresh process."""
    code = (
        "import sys, steprun.cli.main as m; m.build_parser(); "
        "print(sorted(set(sys.modules) & {'pydantic', 'yaml', 'kubernetes_asyncio', "
        "'kubernetes', 'aiohttp', 'kopf', 'steprun.kube.client'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def _cli_error(tmp_path: Path, *argv: str) -> tuple[int, str]:
    import io

    err = io.StringIO()

    def no_cluster(args: argparse.Namespace) -> Any:
        raise AssertionError("a refused manifest must not reach the cluster")

    code = main(list(argv), make_client=no_cluster, stdout=io.StringIO(), stderr=err)
    return code, err.getvalue()


@pytest.mark.parametrize(
    "command", [("run", "-f"), ("render", "-f"), ("render", "--validate", "-f")]
)
def test_bad_yaml_is_reported_with_the_file_name_and_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "step.yaml"
    path.write_text("spec:\n  image: b\n  script: [unclosed\n")
    argv = [*command, str(path)]
    if command[0] == "render" and "--validate" not in command:
        argv = [*command, str(path)]
    code, err = _cli_error(tmp_path, *argv)
    assert code == 2
    assert f'"{path}", line' in err
    assert "<unicode string>" not in err


@pytest.mark.parametrize("command", [("run", "-f"), ("render", "--validate", "-f")])
def test_an_unknown_field_is_named_in_kubectls_words(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "step.yaml"
    path.write_text("kind: StepRun\nmetadata: {name: x}\nspec: {image: b, scirpt: echo}\n")
    code, err = _cli_error(tmp_path, *command, str(path))
    assert code == 2
    assert 'unknown field "spec.scirpt"' in err
    assert "Extra inputs are not permitted" not in err
