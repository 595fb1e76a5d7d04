"""The file watcher: Meshfile edits reload the mesh, source edits restart their service.

What is watched (``WatchTargets``): the Meshfile, the local modules it
imported and the JWKS files it names (their directories, not recursively:
editors replace files rather than write them in place), and each deployment's ``watch`` paths (recursively).
``.git``, ``__pycache__``, ``.venv``, ``node_modules``, ``.meshkit`` and the
like are ignored.  watchfiles groups the changes of one save (it yields once
no change came for ``step`` ms, checked every ``step`` ms: a save is seen
``step`` to ``2 * step`` ms after it), and the changes that arrive while a
reload runs are merged into the next one.  A step of 20 ms is still far longer
than the writes of one save, and a save split in two costs no more than a
second reload (``ChangeMemory`` drops the half already acted on).

``classify`` (pure) says what a batch of changed paths means: a Meshfile
reload, and/or the deployments whose sources changed.

One save is one change: a file can be seen by two watchers (a source beside
the Meshfile is under both the Meshfile's directory and its ``watch`` path),
and their batches can arrive apart, so ``ChangeMemory`` lets a path through
only if its size or modification time differs from when it was last acted on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import attrs
import trio
import watchfiles

from meshkit.dsl.spec import MeshSpec
from meshkit.runtime.reload import Reloader

IGNORED_DIRECTORIES = (*watchfiles.DefaultFilter.ignore_dirs, ".meshkit")
STEP_MS = 20
DEBOUNCE_MS = 1600


@attrs.frozen(kw_only=True)
class WatchTargets:
    meshfile_files: frozenset[str]
    sources: tuple[tuple[str, tuple[str, ...]], ...]  # (deployment key, watch paths)

    @classmethod
    def of(cls, spec: MeshSpec, files: Iterable[str]) -> WatchTargets:
        keys = (jwt.jwks_file for jwt in spec.request_authentication)
        return cls(
            meshfile_files=frozenset(os.path.abspath(file) for file in (*files, *keys)),
            sources=tuple(
                (svc.key, tuple(os.path.abspath(path) for path in svc.watch))
                for svc in spec.services
                if svc.watch
            ),
        )

    def roots(self) -> list[tuple[tuple[str, ...], bool]]:
        """The (paths, recursive) pairs to hand to watchfiles; missing paths left out."""
        directories = sorted({os.path.dirname(file) for file in self.meshfile_files})
        sources = sorted({path for _, paths in self.sources for path in paths})
        pairs: list[tuple[tuple[str, ...], bool]] = []
        existing_dirs = tuple(path for path in directories if os.path.isdir(path))
        if existing_dirs:
            pairs.append((existing_dirs, False))
        existing_sources = tuple(path for path in sources if os.path.exists(path))
        if existing_sources:
            pairs.append((existing_sources, True))
        return pairs


@attrs.frozen(kw_only=True)
class Trigger:
    meshfile: bool = False
    restart: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.meshfile and not self.restart

    def merge(self, other: Trigger) -> Trigger:
        return Trigger(
            meshfile=self.meshfile or other.meshfile, restart=self.restart | other.restart
        )


FileSignature = tuple[int, int] | None


def file_signature(path: str) -> FileSignature:
    """(modification time in ns, size) of ``path``; None once it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ChangeMemory:
    """The paths already acted on, and how they looked then (see the module docstring)."""

    def __init__(self, signature: Callable[[str], FileSignature] = file_signature) -> None:
        self._signature = signature
        self._acted_on: dict[str, FileSignature] = {}

    def fresh(self, paths: Iterable[str]) -> set[str]:
        """The paths changed since they were last acted on; they count as acted on now."""
        changed = set()
        for path in paths:
            now = self._signature(path)
            if path in self._acted_on and self._acted_on[path] == now:
                continue
            self._acted_on[path] = now
            changed.add(path)
        return changed


def classify(paths: Iterable[str], targets: WatchTargets) -> Trigger:
    """What changes to ``paths`` ask for: a Meshfile reload, restarts of deployments."""
    meshfile = False
    restart: set[str] = set()
    for path in paths:
        absolute = os.path.abspath(path)
        if _ignored(absolute):
            continue
        if absolute in targets.meshfile_files:
            meshfile = True
        for key, watched in targets.sources:
            if any(_is_under(absolute, root) for root in watched):
                restart.add(key)
    return Trigger(meshfile=meshfile, restart=frozenset(restart))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _ignored(path: str) -> bool:
    return any(part in IGNORED_DIRECTORIES for part in path.split(os.sep))


def describe_trigger(trigger: Trigger) -> str:
    parts = ["Meshfile changed"] if trigger.meshfile else []
    if trigger.restart:
        parts.append(f"sources of {', '.join(sorted(trigger.restart))} changed")
    return " and ".join(parts)


async def watch_and_reload(
    reloader: Reloader, *, step_ms: int = STEP_MS, debounce_ms: int = DEBOUNCE_MS
) -> None:
    """Watch the targets of the running spec and reload on changes, until cancelled."""
    memory = ChangeMemory()
    while True:
        targets = WatchTargets.of(reloader.fleet.spec, reloader.files)
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[set[str]](64)
            async with send:
                for paths, recursive in targets.roots():
                    nursery.start_soon(
                        _pump, paths, recursive, send.clone(), step_ms, debounce_ms, reloader
                    )
            while True:
                try:
                    batch = await receive.receive()
                except trio.EndOfChannel:
                    await trio.sleep_forever()  # nothing (left) to watch; 'meshkit reload' works
                trigger = classify(memory.fresh(batch), targets)
                detected = trio.current_time()
                while True:
                    try:
                        more = memory.fresh(receive.receive_nowait())
                        trigger = trigger.merge(classify(more, targets))
                    except trio.WouldBlock:
                        break
                if trigger.empty:
                    continue
                await reloader.reload(
                    meshfile=trigger.meshfile,
                    forced=trigger.restart,
                    detected_at=detected,
                    reason=describe_trigger(trigger),
                )
                if WatchTargets.of(reloader.fleet.spec, reloader.files) != targets:
                    break
            nursery.cancel_scope.cancel()


async def _pump(
    paths: tuple[str, ...],
    recursive: bool,
    send: trio.MemorySendChannel[set[str]],
    step_ms: int,
    debounce_ms: int,
    reloader: Reloader,
) -> None:
    watch_filter = watchfiles.DefaultFilter(ignore_dirs=IGNORED_DIRECTORIES)
    async with send:
        try:
            async for changes in watchfiles.awatch(
                *paths,
                watch_filter=watch_filter,
                step=step_ms,
                debounce=debounce_ms,
                recursive=recursive,
            ):
                await send.send({path for _, path in changes})
        except (OSError, RuntimeError) as error:
            # A watched directory that disappears, or inotify running out of
            # watches, stops this watcher only; the mesh runs on.
            reloader.announce(
                f"meshkit: stopped watching {', '.join(paths)}: {error}; "
                "'meshkit reload' still applies edits"
            )
