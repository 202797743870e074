"""Benchmark: a large artifact streams through the store with bounded memory.

    KUBECONFIG=... python -m bench.artifacts [--mib 1024] [--out DIR]

Runs an operator process configured with the local cluster's store (hack/store-up.sh), a
producer step that writes SIZE MiB of random data as an output, and a consumer step that
downloads it and checks the file's own sha256 against the producer's. Meanwhile it samples,
from /proc on this (single-node) machine, the peak resident memory (VmHWM) of every artifact
helper process (the wrapper in the step's container, the init and upload containers) and of the
operator. Writes a Markdown report to DIR/artifacts-<date>.md (default bench/results, where the
committed reports are) and prints it.
Not a test: it asserts nothing about speed, it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from tests.support.operator_process import OperatorProcess

from bench.kube import Api
from bench.procstat import memory_bytes
from steprun.api.models import Phase
from steprun.api.resources import resource
from steprun.client import StepRunClient

RESULTS = Path(__file__).resolve().parent / "results"
HELPER_MARK = "steprun-artifacts"


class PeakSampler(threading.Thread):
    """Peak RSS per helper role (init, run, upload) and of one more pid, sampled from /proc."""

    def __init__(self, operator_pid: int) -> None:
        super().__init__(daemon=True)
        self.operator_pid = operator_pid
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self._sample("operator", self.operator_pid)
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if len(argv) > 1 and argv[0].decode(errors="replace").endswith(HELPER_MARK):
                    self._sample(f"helper {argv[1].decode()}", int(entry.name))
            time.sleep(0.2)

    def _sample(self, role: str, pid: int) -> None:
        try:
            peak = memory_bytes(pid).get("VmHWM", 0)
        except OSError:
            return
        self.peaks[role] = max(self.peaks.get(role, 0), peak)


def store_env(kubeconfig: str) -> dict[str, str]:
    """The store hack/store-up.sh started for the cluster of ``kubeconfig``: it writes
    store.env into store/ beside the cluster's kubeconfig."""
    path = Path(kubeconfig).resolve().parent / "store" / "store.env"
    if not path.exists():
        raise SystemExit(
            f"no artifact store for this cluster ({path} is missing): hack/cluster-up.sh starts "
            "one (hack/store-up.sh)"
        )
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


async def _create_namespace(kubeconfig: str, namespace: str, env: Mapping[str, str]) -> None:
    """The steps' namespace, with the store's credentials as the Secret the operator is told of."""
    api = await Api.connect(kubeconfig)
    try:
        await api.create({"metadata": {"name": namespace}}, resource("Namespace").path(None))
        secret = {
            "metadata": {"name": "store"},
            "stringData": {
                "accessKey": env["STORE_ACCESS_KEY"],
                "secretKey": env["STORE_SECRET_KEY"],
            },
        }
        await api.create(secret, resource("Secret").path(namespace))
    finally:
        await api.close()


async def _delete_namespace(kubeconfig: str, namespace: str) -> None:
    api = await Api.connect(kubeconfig)
    try:
        await api.delete(resource("Namespace").path(None, namespace))
    finally:
        await api.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.artifacts")
    parser.add_argument("--mib", type=int, default=1024, help="artifact size in MiB")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where to write the report (default: bench/results, the committed reports)",
    )
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path(".cluster/kubeconfig").resolve())
    env = store_env(kubeconfig)
    run = uuid.uuid4().hex[:6]
    namespace = f"bench-art-{run}"
    asyncio.run(_create_namespace(kubeconfig, namespace, env))
    steps = StepRunClient.from_kubeconfig(kubeconfig, namespace=namespace)
    time.sleep(2)
    log_dir = Path(f"/tmp/bench-artifacts-{run}")
    log_dir.mkdir(parents=True)
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        extra_env={
            "STEPRUN_NAMESPACES": json.dumps([namespace]),
            "STEPRUN_ARTIFACTS_ENDPOINT": env["STORE_ENDPOINT"],
            "STEPRUN_ARTIFACTS_BUCKET": env["STORE_BUCKET"],
            "STEPRUN_ARTIFACTS_KEY_PREFIX": f"bench/{run}/",
            "STEPRUN_ARTIFACTS_SECRET": f"{namespace}/store",
        },
    )
    operator.start()
    assert operator.process is not None
    sampler = PeakSampler(operator.process.pid)
    sampler.start()
    image = "steprun.local/step:1"
    produce = (
        f"mkdir -p /big && dd if=/dev/urandom of=/big/data bs=1M count={args.mib} 2>/dev/null && "
        "sha256sum /big/data | cut -d' ' -f1 > /big/data.sha256"
    )
    consume = 'cd /in && test "$(sha256sum data | cut -d\' \' -f1)" = "$(cat data.sha256)"'
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        produced = steps.submit(
            {
                "image": image,
                "script": produce,
                "artifacts": {"outputs": [{"name": "big", "path": "/big"}]},
                "timeoutSeconds": 1800,
            },
            name="produce",
        ).wait(timeout=1800)
        timings["produce (write + pack + upload)"] = time.monotonic() - started
        started = time.monotonic()
        consumed = steps.submit(
            {
                "image": image,
                "script": consume,
                "artifacts": {
                    "inputs": [
                        {
                            "name": "big",
                            "from": {"stepRun": "produce", "artifact": "big"},
                            "path": "/in",
                        }
                    ]
                },
                "timeoutSeconds": 1800,
            },
            name="consume",
        ).wait(timeout=1800)
        timings["consume (download + unpack + check)"] = time.monotonic() - started
    finally:
        sampler.stop.set()
        sampler.join()
        operator.stop()
        steps.close()
        asyncio.run(_delete_namespace(kubeconfig, namespace))
    uploaded = ", ".join(
        f"{upload.size} bytes, sha256 {upload.sha256[:16]}…"
        for upload in produced.status.artifacts or []
    )
    lines = [
        f"# Artifact streaming benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{args.mib} MiB of random data as one output, then as the next step's input "
        "(python -m bench.artifacts; single node, 2 cores, local versitygw store).",
        "",
        f"- producer: {produced.status.phase}/{produced.status.reason}; uploaded "
        f"{uploaded or 'nothing'}",
        f"- consumer: {consumed.status.phase}/{consumed.status.reason} (Succeeded: the file's "
        "sha256 matched the producer's)",
        "",
        "| what | seconds |",
        "|---|---:|",
        *(f"| {k} | {v:.1f} |" for k, v in timings.items()),
        "",
        "| process | peak RSS (MiB) |",
        "|---|---:|",
        *(f"| {k} | {v / 2**20:.1f} |" for k, v in sorted(sampler.peaks.items())),
        "",
    ]
    report = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"artifacts-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text(report)
    sys.stdout.write(report)
    ok = produced.status.phase == consumed.status.phase == Phase.SUCCEEDED
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
