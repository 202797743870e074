#!/usr/bin/env python3
"""Pack a root filesystem directory into a single-layer OCI image archive.

Without Docker or a registry, images reach the node as OCI archives imported into containerd
(``ctr -n k8s.io images import``). The archive is deterministic (sorted entries, zero mtimes,
root ownership unless the tree says otherwise), so re-running the build yields the same digest
and the import can be skipped when containerd already has it.

Usage: oci_image.py ROOTFS OUT.tar --name REPO:TAG [--env K=V]... [--cmd JSON] [--entrypoint JSON]
       [--workdir DIR] [--user UID[:GID]]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path


def layer_tar(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for entry in sorted(dirnames + filenames):
                path = Path(dirpath) / entry
                arcname = str(path.relative_to(rootfs))
                info = tar.gettarinfo(str(path), arcname)
                info.mtime = 0
                info.uname = info.gname = ""
                # Keep ownership from the tree only where it was set deliberately (non-root).
                info.uid = path.lstat().st_uid if path.lstat().st_uid >= 1000 else 0
                info.gid = path.lstat().st_gid if path.lstat().st_gid >= 1000 else 0
                if stat.S_ISREG(path.lstat().st_mode):
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def build(args: argparse.Namespace) -> str:
    layer_digest, layer = blob(layer_tar(Path(args.rootfs)))
    config: dict[str, object] = {
        "Env": args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": args.workdir,
    }
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.user:
        config["User"] = args.user
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "steprun hack/oci_image.py"}],
    }
    config_digest, config_blob = blob(json.dumps(image_config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_digest, manifest_blob = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    # containerd names the imported image after this annotation.
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for digest, data in (
        (layer_digest, layer),
        (config_digest, config_blob),
        (manifest_digest, manifest_blob),
    ):
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    with tarfile.open(args.out, mode="w") as archive:
        for name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return manifest_digest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rootfs")
    parser.add_argument("out")
    parser.add_argument("--name", required=True, help="image reference, e.g. steprun.local/step:1")
    parser.add_argument("--env", action="append", help="K=V, repeatable")
    parser.add_argument("--cmd", help="JSON list")
    parser.add_argument("--entrypoint", help="JSON list")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--user")
    print(build(parser.parse_args()))


if __name__ == "__main__":
    main()
