"""The one credential loader (kubeconfig, KUBECONFIG, contexts, in-cluster) and the one backoff."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes
import pytest

from steprun.kube import config
from steprun.kube.backoff import Backoff


def kubeconfig(path: Path, server: str, contexts: dict[str, str | None], current: str) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [
                    {
                        "name": name,
                        "context": {"cluster": "c", "user": "u"}
                        | ({"namespace": ns} if ns else {}),
                    }
                    for name, ns in contexts.items()
                ],
                "current-context": current,
            }
        )
    )
    return str(path)


async def test_the_current_context_gives_server_credentials_and_namespace(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://api.one:6443", {"a": "team-a", "b": None}, "a")
    configuration, namespace = await config.load_configuration(path)
    assert (configuration.host, namespace) == ("https://api.one:6443", "team-a")
    assert configuration.api_key["BearerToken"].endswith("t0ken")
    # Another context: its namespace, else "default".
    assert (await config.load_configuration(path, "b"))[1] == "default"


async def test_kubeconfig_lists_are_merged_like_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "one", "https://api.one:6443", {"a": "ns-a"}, "a")
    second = tmp_path / "two"
    second.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "contexts": []}))
    monkeypatch.setenv("KUBECONFIG", f"{second}:{first}")
    configuration, namespace = await config.load_configuration()
    assert (configuration.host, namespace) == ("https://api.one:6443", "ns-a")


async def test_no_kubeconfig_outside_a_cluster_is_a_config_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(config.ConfigException):
        await config.load_configuration()


async def test_an_unknown_context_is_a_config_exception(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://api.one:6443", {"a": None}, "a")
    with pytest.raises(config.ConfigException):
        await config.load_configuration(path, "nope")


def test_a_configuration_of_the_other_kubernetes_package_is_copied() -> None:
    theirs = kubernetes.client.Configuration()
    theirs.host = "https://api.two:6443"
    theirs.api_key = {"authorization": "Bearer abc"}
    theirs.verify_ssl = False
    ours = config.configuration_of(kubernetes.client.ApiClient(theirs))
    assert (ours.host, ours.api_key, ours.verify_ssl) == (
        "https://api.two:6443",
        {"BearerToken": "Bearer abc"},
        False,
    )
    assert ours.api_key is not theirs.api_key


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [(1, None, 0.5), (3, None, 2.0), (5, None, 8.0), (1, 3.0, 3.0), (4, 1.0, 4.0), (6, None, None)],
)
def test_backoff_doubles_honours_retry_after_and_gives_up(
    failures: int, retry_after: float | None, expected: float | None
) -> None:
    assert Backoff(retries=5, initial=0.5, maximum=8).delay(failures, retry_after=retry_after) == (
        expected
    )


@pytest.mark.parametrize(
    ("api_key", "prefix", "scheme", "token"),
    [
        ({"BearerToken": "Bearer abc"}, {}, "Bearer", "abc"),
        ({"BearerToken": "abc"}, {"BearerToken": "Bearer"}, "Bearer", "abc"),
        ({"BearerToken": "abc"}, {}, None, "abc"),
        ({}, {}, None, None),
    ],
    ids=["header", "prefixed", "bare", "certificates-only"],
)
async def test_kopf_gets_the_loaded_credentials(
    api_key: dict[str, str], prefix: dict[str, str], scheme: str | None, token: str | None
) -> None:
    configuration = config.k8s.Configuration()
    configuration.host = "https://api.one:6443"
    configuration.api_key, configuration.api_key_prefix = api_key, prefix
    configuration.ssl_ca_cert, configuration.cert_file = "/ca.crt", "/me.crt"
    fields = await config.connection_fields(configuration)
    assert (fields["server"], fields["scheme"], fields["token"]) == (
        "https://api.one:6443",
        scheme,
        token,
    )
    assert (fields["ca_path"], fields["certificate_path"], fields["insecure"]) == (
        "/ca.crt",
        "/me.crt",
        False,
    )
