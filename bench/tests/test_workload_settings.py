from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.identity import token_kubeconfig
from bench.settings import parse_rates, parse_sizes, settings_from
from bench.workload import (
    KWOK_TOLERATION,
    RUN_DURATION_ANNOTATION,
    Workload,
    job,
    job_context_configmap,
    steprun,
)


def _container_env(job_body: dict[str, Any]) -> dict[str, object]:
    container = job_body["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_both_sides_run_the_same_step_with_the_same_context() -> None:
    workload = Workload("r1", "kwok", context_bytes=1000, run_duration="2s")
    sr = steprun(workload, "ns-sr", 7)
    jb = job(workload, "ns-job", 7)
    cm = job_context_configmap(workload, "ns-job", 7)
    container = jb["spec"]["template"]["spec"]["containers"][0]
    assert sr["spec"]["image"] == container["image"]
    assert [*sr["spec"]["command"], *sr["spec"]["args"]] == [
        *container["command"],
        *container["args"],
    ]
    env = _container_env(jb)
    plain = {**sr["spec"]["context"]["env"], **sr["spec"]["env"]}
    assert {k: env[k] for k in plain} == plain
    assert "TOKEN" in env and sr["spec"]["context"]["secrets"][0]["name"] == "TOKEN"
    inputs = json.dumps(sr["spec"]["context"]["inputs"])
    assert abs(len(cm["data"]["context.json"]) - len(inputs)) < 200
    assert sr["metadata"]["name"] == jb["metadata"]["name"] == "s-00007"


def test_kwok_placement_and_run_time_on_both_sides() -> None:
    workload = Workload("r1", "kwok", context_bytes=10, run_duration="2s")
    sr_template = steprun(workload, "a", 0)["spec"]["podTemplate"]
    job_template = job(workload, "b", 0)["spec"]["template"]
    assert sr_template["tolerations"] == [KWOK_TOLERATION]
    assert job_template["spec"]["tolerations"] == [KWOK_TOLERATION]
    assert sr_template["nodeSelector"] == job_template["spec"]["nodeSelector"] == {"type": "kwok"}
    assert sr_template["annotations"][RUN_DURATION_ANNOTATION] == "2s"
    assert job_template["metadata"]["annotations"][RUN_DURATION_ANNOTATION] == "2s"


def test_real_placement_sets_nothing() -> None:
    workload = Workload("r1", "real", context_bytes=10, run_duration="2s")
    assert steprun(workload, "a", 0)["spec"]["podTemplate"] == {}
    assert "tolerations" not in job(workload, "b", 0)["spec"]["template"]["spec"]


def test_parse_sizes_and_rates() -> None:
    assert parse_sizes("100, 1000") == (100, 1000)
    assert parse_rates("10,50/s,burst") == (10.0, 50.0, None)
    for bad in ("0", "", "x"):
        with pytest.raises(ValueError):
            parse_sizes(bad)
    for bad in ("-1", "", "fast"):
        with pytest.raises(ValueError):
            parse_rates(bad)


def test_flags_override_environment() -> None:
    settings = settings_from(
        ["--sizes", "5", "--nodes", "real"],
        {"BENCH_SIZES": "100", "BENCH_RATES": "burst", "STEPRUN_WORKER_LIMIT": "8"},
    )
    assert settings.sizes == (5,)
    assert settings.rates == (None,)
    assert settings.nodes == "real"
    assert settings.operator_env == {"STEPRUN_WORKER_LIMIT": "8"}


def test_token_kubeconfig_keeps_the_cluster_and_drops_the_admin(tmp_path: Path) -> None:
    admin = {
        "clusters": [
            {"name": "c", "cluster": {"server": "https://x", "certificate-authority-data": "Q"}}
        ],
        "users": [{"name": "admin", "user": {"client-key-data": "SECRET"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "ctx",
    }
    config = token_kubeconfig(admin, "tok")
    text = yaml.safe_dump(config)
    assert "SECRET" not in text
    assert config["clusters"][0]["cluster"]["server"] == "https://x"
    assert config["users"][0]["user"] == {"token": "tok"}


def test_node_labels_narrow_the_kwok_placement() -> None:
    from bench.settings import parse_labels

    labels = parse_labels("pool=bench, zone=a")
    assert labels == (("pool", "bench"), ("zone", "a"))
    workload = Workload("r", "kwok", 10, "1s", node_labels=labels)
    selector = {"type": "kwok", "pool": "bench", "zone": "a"}
    assert steprun(workload, "a", 0)["spec"]["podTemplate"]["nodeSelector"] == selector
    assert job(workload, "b", 0)["spec"]["template"]["spec"]["nodeSelector"] == selector
    with pytest.raises(ValueError):
        parse_labels("novalue")
