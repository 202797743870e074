"""The kubectl habits of the steprun command, against the fake API server: version, describe,
selectors, watch, JSONPath, sorting, log options, deleting several, rerun, dry runs, and
failing fast and clearly without a cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import StepRunSpec
from steprun.cli import exit_codes
from steprun.kube.errors import Refused
from tests.support.cli import REPO, cli_process, steprun_cli
from tests.support.fake_apiserver import NS, FakeApiServer, finish, status_of, steprun
from tests.support.fake_cluster import FakeCluster


def add(cluster: FakeCluster, name: str, labels: dict[str, str] | None = None, **spec: Any) -> None:
    cluster.create(steprun(NS, name, labels, **spec))


# ---------------------------------------------------------------------- version


def test_version_prints_client_and_server(server: FakeApiServer, kubeconfig: str) -> None:
    code, out, _ = steprun_cli(kubeconfig, "version")
    assert code == 0
    assert out.splitlines()[0].startswith("Client Version: 0.1.0")
    assert out.splitlines()[1] == "Server Version: v1.34.1"
    code, out, _ = steprun_cli(kubeconfig, "version", "--client", "-o", "json")
    assert code == 0 and set(json.loads(out)) == {"clientVersion"}


# ---------------------------------------------------------------------- get as served


def test_get_yaml_is_the_object_as_served(server: FakeApiServer, kubeconfig: str) -> None:
    # A field this client's models do not know, and no defaults the models would add.
    server.cluster.create(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {
                "name": "raw",
                "namespace": NS,
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {"image": "b", "futureField": {"x": 1}},
        }
    )
    code, out, _ = steprun_cli(kubeconfig, "get", "raw", "-o", "yaml", "--show-managed-fields")
    assert code == 0
    assert yaml.safe_load(out) == server.cluster.get("StepRun", NS, "raw")
    code, out, _ = steprun_cli(kubeconfig, "get", "raw", "-o", "yaml")
    served = yaml.safe_load(out)
    # Like kubectl: everything as served but metadata.managedFields.
    stored = server.cluster.get("StepRun", NS, "raw")
    del stored["metadata"]["managedFields"]
    assert served == stored
    assert "mode" not in served["spec"] and served["spec"]["futureField"] == {"x": 1}
    code, out, _ = steprun_cli(kubeconfig, "get", "raw", "-o", "json")
    assert json.loads(out) == served


def test_get_several_names_reports_the_missing_one(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "a")
    add(server.cluster, "b")
    code, out, err = steprun_cli(kubeconfig, "get", "a", "nope", "b", "--no-headers")
    assert code == exit_codes.ERROR
    assert [line.split()[0] for line in out.splitlines()] == ["a", "b"]
    assert 'steprun "nope" not found' in err


# ---------------------------------------------------------------------- selectors, sorting


def test_list_by_label_and_field_selector(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "x1", {"team": "web"})
    add(server.cluster, "x2", {"team": "data"})
    add(server.cluster, "x3", {"team": "web"}, context={"workflow": {"name": "build"}})
    finish(server.cluster, "x3", NS)
    sr = "steprun.steprun.dev/"
    assert steprun_cli(kubeconfig, "list", "-l", "team=web", "-o", "name")[1] == f"{sr}x1\n{sr}x3\n"
    assert (
        steprun_cli(kubeconfig, "list", "--selector", "team=data", "-o", "name")[1] == f"{sr}x2\n"
    )
    code, out, _ = steprun_cli(kubeconfig, "list", "--field-selector", "status.phase=Succeeded")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["x3"]
    # --workflow is a field selector too, combined with the others.
    code, out, _ = steprun_cli(
        kubeconfig, "list", "--workflow", "build", "-l", "team=web", "-o", "name"
    )
    assert out == f"{sr}x3\n"
    (query,) = [q for q in server.requests_of("GET", "stepruns") if "labelSelector" in q][-1:]
    assert query["fieldSelector"] == ["spec.context.workflow.name=build"]


def test_get_without_a_name_lists_like_kubectl_get(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "x1", {"team": "web"})
    add(server.cluster, "x2", {"team": "data"})
    code, out, _ = steprun_cli(kubeconfig, "get")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "x1", "x2"]
    code, out, _ = steprun_cli(kubeconfig, "get", "-l", "team=data", "--no-headers")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["x2"]
    code, _, err = steprun_cli(kubeconfig, "get", "x1", "-l", "team=web")
    assert code == exit_codes.USAGE and "cannot be given with -l" in err


def test_no_headers_and_sort_by(server: FakeApiServer, kubeconfig: str) -> None:
    for name, runs in (("c", 3), ("a", 1), ("b", 2)):
        add(server.cluster, name, retries={"limit": runs})
    code, out, _ = steprun_cli(kubeconfig, "list", "--sort-by", ".spec.retries.limit")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "a", "b", "c"]
    code, out, _ = steprun_cli(kubeconfig, "list", "--sort-by", "{.metadata.name}", "--no-headers")
    assert [line.split()[0] for line in out.splitlines()] == ["a", "b", "c"]
    code, _, err = steprun_cli(kubeconfig, "list", "--sort-by", ".spec[[")
    assert code == exit_codes.USAGE and "--sort-by" in err


# ---------------------------------------------------------------------- jsonpath


def test_jsonpath_output(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "j1", {"steprun.dev/workflow": "build"})
    add(server.cluster, "j2")
    finish(server.cluster, "j1", NS, outputs={"digest": "sha256:abc", "n": 2})
    code, out, _ = steprun_cli(kubeconfig, "get", "j1", "-o", "jsonpath={.status.outputs}")
    assert (code, out) == (0, '{"digest":"sha256:abc","n":2}')
    code, out, _ = steprun_cli(
        kubeconfig, "get", "j1", "-o", "jsonpath={.metadata.labels.steprun\\.dev/workflow}"
    )
    assert out == "build"
    template = '{range .items[*]}{.metadata.name}={.status.phase}{"\\n"}{end}'
    code, out, _ = steprun_cli(kubeconfig, "list", "-o", f"jsonpath={template}")
    assert (code, out) == (0, "j1=Succeeded\nj2=\n")
    code, out, _ = steprun_cli(
        kubeconfig, "list", "-o", 'jsonpath={.items[?(@.status.phase=="Succeeded")].metadata.name}'
    )
    assert out == "j1"


def test_a_bad_jsonpath_is_a_usage_error(kubeconfig: str) -> None:
    with pytest.raises(SystemExit) as exited:
        steprun_cli(kubeconfig, "list", "-o", "jsonpath={range .items[*]}")
    assert exited.value.code == 2


# ---------------------------------------------------------------------- watch


def test_list_watch_prints_each_change_until_ctrl_c(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "w1", {"team": "web"})
    add(server.cluster, "other", {"team": "data"})
    process = cli_process(kubeconfig, "list", "-w", "-l", "team=web")
    assert process.stdout is not None
    assert process.stdout.readline().split()[:2] == ["NAME", "PHASE"]
    assert process.stdout.readline().split()[:2] == ["w1", "Pending"]
    server.cluster.set_status(NS, "other", phase="Running")  # not selected: not printed
    server.cluster.set_status(NS, "w1", phase="Running")
    assert process.stdout.readline().split()[:2] == ["w1", "Running"]
    add(server.cluster, "w2", {"team": "web"})
    assert process.stdout.readline().split()[:2] == ["w2", "Pending"]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


def test_watch_after_an_empty_listing_prints_the_header_first(
    server: FakeApiServer, kubeconfig: str
) -> None:
    process = cli_process(kubeconfig, "list", "-w")
    assert process.stdout is not None and process.stderr is not None
    assert "No StepRuns found" in process.stderr.readline()
    add(server.cluster, "late")
    assert process.stdout.readline().split()[:2] == ["NAME", "PHASE"]
    assert process.stdout.readline().split()[:2] == ["late", "Pending"]
    server.cluster.set_status(NS, "late", phase="Running")
    assert process.stdout.readline().split()[:2] == ["late", "Running"]
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)


def test_get_watch_follows_one_step(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "one")
    add(server.cluster, "two")
    process = cli_process(kubeconfig, "get", "one", "-w", "-o", "jsonpath={.status.phase}{'\\n'}")
    assert process.stdout is not None
    assert process.stdout.readline() == "\n"
    server.cluster.set_status(NS, "two", phase="Running")
    finish(server.cluster, "one", NS)
    assert process.stdout.readline() == "Succeeded\n"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 0


# ---------------------------------------------------------------------- describe


def test_describe_shows_attempts_outputs_pod_state_and_events(
    server: FakeApiServer, kubeconfig: str
) -> None:
    cluster = server.cluster
    add(cluster, "d", {"team": "web"}, script="make", retries={"limit": 2})
    pod = cluster.add_pod(NS, "d", 2)
    cluster.set_pod_state(NS, pod, "terminated", "Error")
    oom_killed = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    cluster.update(
        "Pod",
        NS,
        pod,
        lambda obj: obj["status"]["containerStatuses"][0].update(lastState=oom_killed),
    )
    evicted = {"category": "Platform", "stage": "Running", "reason": "Evicted", "node": "n1"}
    failure = {
        "category": "Step",
        "stage": "Running",
        "reason": "Error",
        "container": "step",
        "exitCode": 3,
        "node": "n2",
        "events": [{"reason": "BackOff", "message": "slow disk", "type": "Warning"}],
    }
    attempts = [
        {
            "attempt": 1,
            "podName": "d-1",
            "exitCode": 137,
            "reason": "Evicted",
            "message": "boom",
            "failure": evicted,
        },
        {"attempt": 2, "podName": "d-2", "exitCode": 3, "reason": "Error", "failure": failure},
    ]
    finish(
        cluster,
        "d",
        NS,
        phase="Failed",
        reason="Error",
        exitCode=3,
        message="exit 3",
        attempt=2,
        podName="d-2",
        attempts=attempts,
        outputs={"digest": "sha256:1"},
        failure=failure,
    )
    uid = cluster.get("StepRun", NS, "d")["metadata"]["uid"]
    for event in [
        {
            "metadata": {"name": "e1", "namespace": NS},
            "involvedObject": {"kind": "StepRun", "name": "d", "uid": uid},
            "type": "Warning",
            "reason": "Failed",
            "message": "attempt 2 failed",
            "source": {"component": "steprun-operator"},
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
        {
            "metadata": {"name": "e2", "namespace": NS},
            "involvedObject": {"kind": "StepRun", "name": "someone-else"},
            "type": "Normal",
            "reason": "Other",
            "message": "not about d",
        },
    ]:
        cluster.put({"apiVersion": "v1", "kind": "Event", **event})
    code, out, err = steprun_cli(kubeconfig, "describe", "d")
    assert code == 0, err
    assert "Name:           d\n" in out and "Phase:          Failed\n" in out
    assert "Exit Code:      3\n" in out
    assert (
        "Attempt:        2 of at most 5 (retries spent: 0 of 2 for the step, 1 of 2 for the "
        "platform)\n"
    ) in out
    assert (
        "Failure:        Step at Running (Error), container step, exit code 3, node n2\n"
        "  Warning BackOff: slow disk\n"
    ) in out
    assert "  digest: sha256:1\n" in out
    attempt_rows = out.split("Attempts:\n")[1].split("Pod:")[0].splitlines()
    assert [row.split()[:4] for row in attempt_rows[1:]] == [
        ["1", "d-1", "137", "Evicted"],
        ["2", "d-2", "3", "Error"],
    ]
    assert "Platform/Running" in attempt_rows[1] and "Step/Running" in attempt_rows[2]
    assert "State:          Terminated (Error), exit code 1" in out
    assert "Last State:     Terminated (OOMKilled), exit code 137" in out
    events = out.split("Events:\n")[1]
    assert "attempt 2 failed" in events and "not about d" not in events


def test_describe_names_what_a_sandbox_step_runs(server: FakeApiServer, kubeconfig: str) -> None:
    add(
        server.cluster,
        "q",
        mode="sandbox",
        sandbox={"policy": "ci", "uses": "plugin:@kb-labs/quality/check"},
    )
    add(server.cluster, "p", mode="sandbox", sandbox={"policy": "ci", "plugin": "@kb-labs/lint"})
    code, out, err = steprun_cli(kubeconfig, "describe", "q")
    assert code == 0, err
    assert "Sandbox:        plugin:@kb-labs/quality/check, policy ci\n" in out
    code, out, err = steprun_cli(kubeconfig, "describe", "p")
    assert code == 0, err
    assert "Sandbox:        plugin @kb-labs/lint, policy ci\n" in out


# ---------------------------------------------------------------------- logs


def test_logs_tail_and_timestamps(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "l")
    pod = server.cluster.add_pod(NS, "l", 1)
    server.cluster.log(NS, pod, "one", "two", "three")
    finish(server.cluster, "l", NS)
    assert steprun_cli(kubeconfig, "logs", "l", "--tail", "2")[1] == "two\nthree\n"
    code, out, _ = steprun_cli(kubeconfig, "logs", "l", "--timestamps", "--since", "1h")
    assert code == 0 and out.splitlines()[0] == "2026-01-01T00:00:00Z one"
    (query,) = server.requests_of("GET", "/log")[-1:]
    assert query["sinceSeconds"] == ["3600"] and query["timestamps"][0].lower() == "true"


# ---------------------------------------------------------------------- delete, rerun


def test_delete_several_by_name_and_by_selector(server: FakeApiServer, kubeconfig: str) -> None:
    for name, team in (("d1", "web"), ("d2", "web"), ("d3", "data"), ("d4", "data")):
        add(server.cluster, name, {"team": team})
    code, out, err = steprun_cli(kubeconfig, "delete", "d1", "gone", "d3")
    assert code == exit_codes.ERROR and 'steprun "gone" not found' in err
    assert out == "steprun/d1 deleted\nsteprun/d3 deleted\n"
    code, out, _ = steprun_cli(kubeconfig, "delete", "-l", "team=web")
    assert (code, out) == (0, "steprun/d2 deleted\n")
    assert server.cluster.names("StepRun", NS) == ["d4"]
    assert steprun_cli(kubeconfig, "delete", "gone", "--ignore-not-found")[0] == 0
    assert steprun_cli(kubeconfig, "delete")[0] == exit_codes.USAGE
    assert steprun_cli(kubeconfig, "delete", "--all")[1] == "steprun/d4 deleted\n"


def test_rerun_creates_a_new_step_from_the_old_spec(server: FakeApiServer, kubeconfig: str) -> None:
    add(
        server.cluster,
        "first",
        {"team": "web"},
        script="make",
        cancel=True,
        context={"workflow": {"name": "build", "runId": "42"}},
    )
    finish(server.cluster, "first", NS, phase="Cancelled", reason="Cancelled")
    code, out, err = steprun_cli(kubeconfig, "rerun", "first", "--detach")
    assert code == 0, err
    new = server.cluster.get("StepRun", NS, out.strip())
    assert new["metadata"]["name"].startswith("first-")
    old = server.cluster.get("StepRun", NS, "first")
    assert new["spec"] == StepRunSpec.model_validate({**old["spec"], "cancel": False}).to_api()
    labels = new["metadata"]["labels"]
    assert labels["team"] == "web" and labels["steprun.dev/rerun-of"] == "first"
    assert labels["steprun.dev/workflow"] == "build"
    assert "status" not in new
    code, out, _ = steprun_cli(kubeconfig, "rerun", "first", "--name", "again", "--detach")
    assert (code, out) == (0, "again\n")


# ---------------------------------------------------------------------- dry runs


def test_run_and_render_dry_run_server_store_nothing(
    server: FakeApiServer, kubeconfig: str, tmp_path: Path
) -> None:
    code, out, err = steprun_cli(
        kubeconfig, "run", "dry", "--image", "b", "--dry-run", "server", "--", "true"
    )
    assert code == 0, err
    assert yaml.safe_load(out)["metadata"]["uid"]  # the server's answer, not the request
    manifest = tmp_path / "step.yaml"
    manifest.write_text(
        "apiVersion: steprun.dev/v1alpha1\nkind: StepRun\nmetadata: {name: rendered}\n"
        "spec: {image: b, script: 'echo hi'}\n"
    )
    code, out, err = steprun_cli(kubeconfig, "render", "-f", str(manifest), "--dry-run=server")
    assert code == 0, err
    assert "kind: Pod" in out
    assert server.cluster.of_kind("StepRun") == []
    creates = server.requests_of("POST", "stepruns")
    assert [q.get("dryRun") for q in creates] == [["All"], ["All"]]


def test_render_dry_run_server_reports_the_servers_refusal(
    server: FakeApiServer, kubeconfig: str, tmp_path: Path
) -> None:
    causes = [{"field": "spec.image", "message": "not allowed"}]
    refusal = status_of(422, "denied by policy", details={"causes": causes})
    server.cluster.fail("create", "StepRun", Refused(422, "Invalid", "denied by policy", refusal))
    manifest = tmp_path / "step.yaml"
    manifest.write_text("kind: StepRun\nmetadata: {name: r}\nspec: {image: b, script: x}\n")
    code, _, err = steprun_cli(kubeconfig, "render", "-f", str(manifest), "--dry-run=server")
    assert code == exit_codes.USAGE and "spec.image: not allowed" in err


# ---------------------------------------------------------------------- no cluster, fast


def _steprun(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steprun", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_no_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["HOME"] = str(tmp_path)
    result = _steprun("list", env=env)
    assert result.returncode == exit_codes.ERROR
    assert "no cluster configuration: pass --kubeconfig FILE, set KUBECONFIG" in result.stderr
    assert "Service host/port" not in result.stderr
    result = _steprun("list", env={**env, "KUBECONFIG": str(tmp_path / "nope")})
    assert "nope ($KUBECONFIG) does not exist" in result.stderr
    result = _steprun("--kubeconfig", str(tmp_path / "gone"), "list", env=env)
    assert "gone (--kubeconfig) does not exist" in result.stderr


def test_a_server_that_never_answers_fails_after_request_timeout(tmp_path: Path) -> None:
    # Accepts connections (the backlog) but never reads or answers them.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        config = tmp_path / "kubeconfig"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        env = {**os.environ, "KUBECONFIG": str(config)}
        # pytest-timeout (the suite's) would stop a command that waits for the server forever.
        result = _steprun("--request-timeout", "1s", "get", "x", env=env)
    assert result.returncode == exit_codes.API_UNREACHABLE, result.stderr
    assert "unreachable" in result.stderr


# ---------------------------------------------------------------------- run like kubectl run


def test_run_labels_timeout_duration_and_client_dry_run_as_json(kubeconfig: str) -> None:
    code, out, err = steprun_cli(
        kubeconfig,
        *("run", "x", "--image", "steprun.local/step:1", "-l", "team=web,tier=1"),
        *("--labels", "extra=yes", "--timeout", "10m", "--dry-run=client", "-o", "json"),
        *("--", "true"),
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["spec"]["timeoutSeconds"] == 600
    assert body["metadata"]["labels"]["team"] == "web"
    assert body["metadata"]["labels"]["extra"] == "yes"


def test_run_rm_deletes_the_step_once_it_ended(server: FakeApiServer, kubeconfig: str) -> None:
    import threading

    def finish_when_created() -> None:
        for _ in range(400):
            if "gone" in server.cluster.names("StepRun", NS):
                finish(server.cluster, "gone", NS)
                return
            threading.Event().wait(0.05)

    finisher = threading.Thread(target=finish_when_created)
    finisher.start()
    code, _, err = steprun_cli(
        kubeconfig, "run", "gone", "--image", "b", "--rm", "--no-logs", "--", "true"
    )
    finisher.join()
    assert code == 0, err
    assert "steprun/gone deleted" in err
    assert "gone" not in server.cluster.names("StepRun", NS)
    code, _, err = steprun_cli(kubeconfig, "run", "--image", "b", "--rm", "--detach", "--", "x")
    assert code == exit_codes.USAGE and "--rm" in err


# ---------------------------------------------------------------------- first contact


def test_bare_steprun_prints_help_and_succeeds_like_kubectl() -> None:
    import io

    from steprun.cli.main import main

    out = io.StringIO()
    assert main([], stdout=out, stderr=io.StringIO()) == exit_codes.OK
    assert out.getvalue().startswith("usage: steprun") and "examples:" in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "suggested"),
    [
        (["lsit"], "list"),
        (["-n", "ci", "lgos", "x"], "logs"),
        (["--context", "c", "descrbe"], "describe"),
    ],
)
def test_a_mistyped_command_gets_did_you_mean(argv: list[str], suggested: str) -> None:
    import io

    from steprun.cli.main import main

    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == exit_codes.USAGE
    text = err.getvalue()
    typed = next(w for w in argv if w.startswith(suggested[0]) and w != suggested)
    assert f'unknown command "{typed}" for "steprun"' in text
    assert f"Did you mean this?\n\t{suggested}\n" in text


def test_kubectls_global_flags_are_taken(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "v1")
    code, out, _ = steprun_cli(kubeconfig, "-v", "6", "get", "v1", "--v=2")
    assert code == 0 and "v1" in out
    # Impersonation is refused rather than silently ignored.
    code, _, err = steprun_cli(kubeconfig, "--as", "bob", "get", "v1")
    assert code == exit_codes.USAGE and "does not impersonate" in err
    code, _, err = steprun_cli(kubeconfig, "get", "v1", "--as-group", "admins")
    assert code == exit_codes.USAGE and "--as-group" in err


def test_kubectl_completes_the_plugin(server: FakeApiServer, kubeconfig: str) -> None:
    add(server.cluster, "complete-me")

    def complete(*words: str) -> list[str]:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from steprun.cli.completion import kubectl_complete_main as m; "
                "sys.exit(m(sys.argv[1:]))",
                *words,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "KUBECONFIG": kubeconfig},
            check=True,
            timeout=120,
        )
        return result.stdout.splitlines()

    assert complete("lo") == ["logs", ":4"]
    assert complete("describe", "comp") == ["complete-me", ":4"]
    assert "--output" in complete("get", "--o")
