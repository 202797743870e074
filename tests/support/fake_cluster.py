"""The state of an in-memory API server, shared by every fake of this suite.

The reconciler tests call it directly (``tests.support.fake_kube.FakeKube``, the operator's
access layer); the client and CLI tests reach it over real HTTP
(``tests.support.fake_apiserver.FakeApiServer``). Both see the semantics the code under test
relies on:

- resourceVersions that move on every change (and not on a write that changes nothing), a
  stale ``metadata.resourceVersion`` precondition refused with Conflict;
- AlreadyExists on create, NotFound on reads and writes of what is not there, ``generateName``
  and dry runs;
- uid preconditions on delete; finalizers that hold a deleted object (``deletionTimestamp``
  set) until the last one is removed;
- label and field selection; a watch history from any resourceVersion, and 410 Gone for a
  resourceVersion older than the last compaction;
- failures injected per (verb, kind) as the access layer's own typed errors, so the code under
  test sees exactly what it would see from a real server. A failure or interleaved writer that
  is never used fails the test (``unused``, checked by tests/unit/conftest.py): a test whose
  fault was never met proves nothing.

Thread-safe: the HTTP server answers from several threads while the test plays the operator.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from steprun.kube.errors import AlreadyExists, Conflict, KubeError, NotFound, Refused

Body = dict[str, Any]
ObjKey = tuple[str, str | None, str]
Call = tuple[str, str, str | None]
# Any verb, or any kind, in an injected failure.
ANY = "*"
_ALL_NAMESPACES = object()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Body, patch: Mapping[str, Any]) -> None:
    """RFC 7386: ``None`` removes a key, mappings merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def labels_match(labels: Mapping[str, str], selector: str | None) -> bool:
    """Equality label selectors (``a=b,c=d``), the only kind this suite sends."""
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def fields_match(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Equality field selectors over dotted paths, like the API server's selectableFields."""
    for term in filter(None, (selector or "").split(",")):
        path, _, wanted = term.partition("=")
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or str(value) != wanted:
            return False
    return True


def gone() -> KubeError:
    """What a watch from a compacted resourceVersion answers (etcd's history is gone)."""
    return KubeError(410, "Expired", "too old resource version")


def not_found(kind: str, name: str) -> NotFound:
    return NotFound(404, "NotFound", f'{kind.lower()}s "{name}" not found')


class Killed(BaseException):
    """The operator's process dies as it is about to make a request: the request never reaches
    the server and nothing the process held in memory survives. Not an API error, so no
    ``except Exception`` in the operator can swallow it."""


class FakeCluster:
    # Every cluster made since the last ``made.clear()``: checked for unused faults after a test.
    made: ClassVar[list[FakeCluster]] = []

    def __init__(self) -> None:
        FakeCluster.made.append(self)
        self.cond = threading.Condition(threading.RLock())
        self.objects: dict[ObjKey, Body] = {}
        self.rv = 1000
        # (resourceVersion, ADDED | MODIFIED | DELETED, the object as it was then)
        self.history: list[tuple[int, str, Body]] = []
        # A watch from a resourceVersion older than this gets 410 Gone.
        self.compacted_below = 0
        self.calls: list[Call] = []
        self.kill_before: int | None = None
        self.failures: dict[tuple[str, str], list[KubeError]] = defaultdict(list)
        self.interleaved: dict[tuple[str, str], list[Callable[[], object]]] = defaultdict(list)
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.closed_logs: set[tuple[str, str]] = set()
        # Set when the server stops: blocked watches and log streams end.
        self.stopping = False

    # ---------------------------------------------------------------- test controls

    def fail(self, verb: str, kind: str, *errors: KubeError) -> None:
        """The next calls of ``verb`` on ``kind`` (either may be ``ANY``) fail with ``errors``,
        one per call."""
        with self.cond:
            self.failures[(verb, kind)].extend(errors)

    def unused(self) -> list[str]:
        """The injected failures and interleaved writers no request has met yet."""
        with self.cond:
            left = [
                f"{len(errors)} failure(s) injected into {verb} {kind} never raised"
                for (verb, kind), errors in self.failures.items()
                if errors
            ]
            left += [
                f"{len(actions)} writer(s) interleaved before {verb} {kind} never ran"
                for (verb, kind), actions in self.interleaved.items()
                if actions
            ]
            return left

    def kill_at(self, request: int) -> None:
        """The operator dies as it makes its ``request``-th request from now (0: the next one)."""
        with self.cond:
            self.kill_before = len(self.calls) + request

    def interleave(self, verb: str, kind: str, action: Callable[[], object]) -> None:
        """Before the next ``verb`` on ``kind`` is carried out, ``action()`` runs: another
        writer slipping in between this client's read and its write."""
        with self.cond:
            self.interleaved[(verb, kind)].append(action)

    def enter(self, verb: str, kind: str, name: str | None) -> None:
        """Every request passes here: it is counted, lets an interleaved writer in, and fails
        if a failure is injected."""
        with self.cond:
            if self.kill_before is not None and len(self.calls) >= self.kill_before:
                self.kill_before = None
                raise Killed(f"killed before {verb} {kind} {name}")
            self.calls.append((verb, kind, name))
            actions = self.interleaved.get((verb, kind))
            if actions:
                actions.pop(0)()
            for key in ((verb, kind), (ANY, kind), (verb, ANY), (ANY, ANY)):
                pending = self.failures.get(key)
                if pending:
                    raise pending.pop(0)

    def count(self, verb: str, kind: str) -> int:
        return sum(1 for v, k, _ in self.calls if v == verb and k == kind)

    def put(self, body: Mapping[str, Any]) -> Body:
        """Store an object as another client would have created or replaced it."""
        with self.cond:
            stored = copy.deepcopy(dict(body))
            meta = stored.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            key = (str(stored["kind"]), meta.get("namespace"), str(meta["name"]))
            self._record("MODIFIED" if key in self.objects else "ADDED", key, stored)
            return copy.deepcopy(stored)

    def update(
        self, kind: str, namespace: str | None, name: str, change: Callable[[Body], Any]
    ) -> Body:
        """Another client's write: ``change`` edits a copy of the stored object, which is then
        written with the rules of any write (a new resourceVersion, an event, finalizers)."""
        with self.cond:
            body = copy.deepcopy(self._stored(kind, namespace, name))
            change(body)
            return self._write((kind, namespace, name), body)

    def remove(self, kind: str, namespace: str | None, name: str) -> Body:
        """The object is gone at once, whatever its finalizers (a namesake may follow)."""
        with self.cond:
            body = self._stored(kind, namespace, name)
            self._record("DELETED", (kind, namespace, name), body)
            return copy.deepcopy(body)

    def compact(self) -> None:
        """Like etcd's compaction: a watch from any resourceVersion older than the latest gets
        410 Gone (and must list again)."""
        with self.cond:
            self.compacted_below = self.rv
            self.history = [entry for entry in self.history if entry[0] >= self.rv]

    def find(self, kind: str, namespace: str | None, name: str) -> Body | None:
        with self.cond:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def of_kind(self, kind: str, namespace: Any = _ALL_NAMESPACES) -> list[Body]:
        with self.cond:
            return [
                copy.deepcopy(body)
                for (k, ns, _), body in sorted(self.objects.items(), key=_by_key)
                if k == kind and namespace in (_ALL_NAMESPACES, ns)
            ]

    def names(self, kind: str, namespace: str | None) -> list[str]:
        return [body["metadata"]["name"] for body in self.of_kind(kind, namespace)]

    # ---------------------------------------------------------------- what the API serves

    def get(self, kind: str, namespace: str | None, name: str) -> Body:
        with self.cond:
            return copy.deepcopy(self._stored(kind, namespace, name))

    def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Body], str]:
        """The selected objects (of every namespace when ``namespace`` is None) and the list's
        resourceVersion, from which a watch goes on."""
        with self.cond:
            items = [
                copy.deepcopy(body)
                for (k, ns, _), body in sorted(self.objects.items(), key=_by_key)
                if k == kind
                and namespace in (None, ns)
                and labels_match(body["metadata"].get("labels") or {}, label_selector)
                and fields_match(body, field_selector)
            ]
            return items, str(self.rv)

    def create(self, body: Mapping[str, Any], *, dry_run: bool = False) -> Body:
        with self.cond:
            stored = copy.deepcopy(dict(body))
            meta = stored.setdefault("metadata", {})
            for owned_by_the_server in ("uid", "resourceVersion", "deletionTimestamp"):
                meta.pop(owned_by_the_server, None)
            if not meta.get("name"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (str(stored["kind"]), meta.get("namespace"), str(meta["name"]))
            if key in self.objects:
                raise AlreadyExists(
                    409, "AlreadyExists", f'{key[0].lower()}s "{key[2]}" already exists'
                )
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now())
            if dry_run:
                return stored
            self._record("ADDED", key, stored)
            return copy.deepcopy(stored)

    def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str = "",
    ) -> Body:
        """A merge patch; a ``metadata.resourceVersion`` in it is a precondition. Through the
        status subresource only ``.status`` changes; through the object everything else."""
        with self.cond:
            stored = self._stored(kind, namespace, name)
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != stored["metadata"]["resourceVersion"]:
                raise Conflict(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.lower()}s "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                )
            body = copy.deepcopy(stored)
            if subresource == "status":
                merge_patch(body, {"status": patch.get("status") or {}})
            else:
                merge_patch(body, {k: v for k, v in patch.items() if k != "status"})
            return self._write((kind, namespace, name), body)

    def json_patch(
        self, kind: str, namespace: str | None, name: str, operations: list[Mapping[str, Any]]
    ) -> Body:
        """RFC 6902 (add, remove, replace, test), all or nothing: a failed ``test`` or a path
        that is not there refuses the whole patch with 422, as the API server does."""
        with self.cond:
            body = copy.deepcopy(self._stored(kind, namespace, name))
            try:
                for operation in operations:
                    _apply(body, operation)
            except (KeyError, IndexError, ValueError, TypeError) as error:
                raise Refused(422, "Invalid", f"the server rejected our request: {error}") from None
            return self._write((kind, namespace, name), body)

    def remove_finalizer(self, kind: str, namespace: str | None, name: str, finalizer: str) -> bool:
        """False when the object or its finalizer is already gone."""
        with self.cond:
            stored = self.objects.get((kind, namespace, name))
            if stored is None or finalizer not in (stored["metadata"].get("finalizers") or []):
                return False
            body = copy.deepcopy(stored)
            body["metadata"]["finalizers"].remove(finalizer)
            self._write((kind, namespace, name), body)
            return True

    def delete(
        self, kind: str, namespace: str | None, name: str, *, uid: str | None = None
    ) -> Body:
        """Deleted, or marked for deletion while finalizers hold it."""
        with self.cond:
            stored = self._stored(kind, namespace, name)
            if uid and stored["metadata"].get("uid") != uid:
                raise Conflict(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {stored['metadata'].get('uid')}",
                )
            body = copy.deepcopy(stored)
            if not body["metadata"].get("deletionTimestamp"):
                body["metadata"]["deletionTimestamp"] = now()
            return self._write((kind, namespace, name), body)

    def events_since(
        self,
        since: int,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[tuple[int, str, Body]]:
        """The watch events after resourceVersion ``since``; gone() if that is compacted."""
        with self.cond:
            if since < self.compacted_below:
                raise gone()
            return [
                (rv, event, copy.deepcopy(obj))
                for rv, event, obj in self.history
                if rv > since
                and obj["kind"] == kind
                and namespace in (None, obj["metadata"].get("namespace"))
                and labels_match(obj["metadata"].get("labels") or {}, label_selector)
                and fields_match(obj, field_selector)
            ]

    # ---------------------------------------------------------------- writes, recorded

    def _stored(self, kind: str, namespace: str | None, name: str) -> Body:
        body = self.objects.get((kind, namespace, name))
        if body is None:
            raise not_found(kind, name)
        return body

    def _write(self, key: ObjKey, body: Body) -> Body:
        meta = body["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._record("DELETED", key, body)
        elif body != self.objects[key]:
            self._record("MODIFIED", key, body)
        # A write that changes nothing keeps the resourceVersion and makes no event.
        return copy.deepcopy(self.objects.get(key, body))

    def _record(self, event: str, key: ObjKey, body: Body) -> None:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        if event == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = body
        self.history.append((self.rv, event, copy.deepcopy(body)))
        self.cond.notify_all()

    # ---------------------------------------------------------------- logs (the kubelet's)

    def log(self, namespace: str, pod: str, *lines: str) -> None:
        with self.cond:
            self.logs.setdefault((namespace, pod), []).extend(f"{line}\n" for line in lines)
            self.cond.notify_all()

    def end_log(self, namespace: str, pod: str) -> None:
        with self.cond:
            self.closed_logs.add((namespace, pod))
            self.cond.notify_all()

    def wait_for(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Until ``ready()`` (checked under ``cond``), the server stops, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        with self.cond:
            while not ready() and not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.2))
            return not self.stopping

    # ---------------------------------------------------------------- playing the operator

    def set_status(self, namespace: str, name: str, **status: Any) -> Body:
        """What the operator writes into a StepRun's status."""
        return self.update("StepRun", namespace, name, lambda obj: _set_status(obj, status))

    def touch(self, namespace: str, name: str) -> Body:
        """A change of a StepRun that is not a phase change, so watches see more events."""
        return self.update(
            "StepRun",
            namespace,
            name,
            lambda obj: obj["metadata"].setdefault("annotations", {}).update(touched=str(self.rv)),
        )

    def add_pod(
        self, namespace: str, steprun: str, attempt: int, state: str = "running", reason: str = ""
    ) -> str:
        """The Pod of one attempt, as the operator makes it and the kubelet reports it."""
        name = f"{steprun}-{attempt}"
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        "steprun.dev/name": steprun,
                        "app.kubernetes.io/managed-by": "steprun",
                        "steprun.dev/attempt": str(attempt),
                    },
                },
                "spec": {"containers": [{"name": "step", "image": "busybox"}]},
                "status": {
                    "phase": "Pending" if state == "waiting" else "Running",
                    "containerStatuses": [
                        {
                            "name": "step",
                            "image": "busybox",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": _container_state(state, reason),
                        }
                    ],
                },
            }
        )
        with self.cond:
            self.logs.setdefault((namespace, name), [])
        return name

    def set_pod_state(self, namespace: str, pod: str, state: str, reason: str = "") -> Body:
        def change(obj: Body) -> None:
            obj["status"]["containerStatuses"][0]["state"] = _container_state(state, reason)
            obj["status"]["phase"] = _pod_phase(state)

        return self.update("Pod", namespace, pod, change)


def _set_status(obj: Body, status: Mapping[str, Any]) -> None:
    obj["status"] = {**obj.get("status", {}), **status}


def _pod_phase(state: str) -> str:
    return {"waiting": "Pending", "running": "Running"}.get(state, "Failed")


def _container_state(state: str, reason: str) -> Body:
    detail: Body = {"reason": reason} if reason else {}
    if state == "terminated":
        detail["exitCode"] = 0 if reason == "Completed" else 1
    return {state: detail}


def _apply(body: Body, operation: Mapping[str, Any]) -> None:
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    target: Any = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    index: Any = (len(target) if last == "-" else int(last)) if isinstance(target, list) else last
    op = operation["op"]
    if op == "test":
        if target[index] != operation["value"]:
            raise ValueError(f"testing value {operation['path']} failed")
    elif op == "remove":
        del target[index]
    elif op == "add" and isinstance(target, list):
        target.insert(index, copy.deepcopy(operation["value"]))
    elif op in ("add", "replace"):
        if op == "replace" and isinstance(target, dict) and index not in target:
            raise KeyError(operation["path"])
        target[index] = copy.deepcopy(operation["value"])
    else:
        raise ValueError(f"unsupported operation {op!r}")


def _by_key(item: tuple[ObjKey, Body]) -> tuple[str, str, str]:
    (kind, namespace, name), _ = item
    return kind, namespace or "", name
