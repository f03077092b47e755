"""What the processes of ``smtp-sink serve --workers N`` share: the fault rules with their
counters, and the count of open SMTP sessions, so that both stay global.

Everything lives in a private runtime folder the parent makes: ``state``, a small file every
process maps (``MAP_SHARED``), and ``rules.json``, the rule table. One lock guards both:
``flock`` on each process's own descriptor of ``state`` (plus a thread lock inside a process),
so the kernel releases the lock of a process that dies, even by ``kill -9``.

``state`` holds native 64-bit integers: the rule table's generation, the total of open sessions,
one occurrence counter per rule slot (:data:`~smtp_sink.rules.MAX_RULES`), then one open-session
count per worker (:data:`~smtp_sink.config.MAX_WORKERS`).

:class:`SharedRuleSet` is a :class:`~smtp_sink.rules.RuleSet` whose counters are the shared
ones: a worker looks at the generation (one read of shared memory, no lock) before each match and
reloads the table when it changed, so a rule added through the API applies to the next command in
every worker; matching counts under the lock, so ``nth``, ``every`` and ``first`` count exactly as
in one process. A seeded ``probability`` rule gives the k-th matching occurrence the k-th number of
``random.Random(seed)`` (each process keeps its own generator and skips the numbers the others
drew), the same sequence as one process.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import mmap
import os
import threading
from pathlib import Path
from typing import Any

from .config import MAX_WORKERS
from .rules import MAX_RULES, Rule, RuleSet, Schedule, Stage, Trigger, _Counter

STATE = "state"
TABLE = "rules.json"
_GENERATION, _TOTAL, _COUNTERS = 0, 8, 64
_CONNECTIONS = _COUNTERS + 8 * MAX_RULES
SIZE = _CONNECTIONS + 8 * MAX_WORKERS


class SharedState:
    """The shared file of one server's processes, mapped; :meth:`create` (the parent) or
    :meth:`attach` (a worker)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd = os.open(folder / STATE, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        self._map = mmap.mmap(self._fd, SIZE)
        self.generation = ctypes.c_int64.from_buffer(self._map, _GENERATION)  # of the rule table
        self.total = ctypes.c_int64.from_buffer(self._map, _TOTAL)  # open sessions, all workers
        self.counters = (ctypes.c_int64 * MAX_RULES).from_buffer(self._map, _COUNTERS)  # per rule slot
        self.connections = (ctypes.c_int64 * MAX_WORKERS).from_buffer(self._map, _CONNECTIONS)  # per worker
        self._thread_lock = threading.Lock()

    @classmethod
    def create(cls, folder: Path) -> SharedState:
        """Make ``state`` (zeros) in ``folder`` and map it."""
        with open(folder / STATE, "wb") as handle:
            handle.truncate(SIZE)
        return cls(folder)

    @classmethod
    def attach(cls, folder: Path) -> SharedState:
        """Map the ``state`` the parent made."""
        return cls(folder)

    def acquire(self) -> None:
        """Take the lock (threads of this process, then the other processes)."""
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        """Give the lock back."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> SharedState:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- sessions (max_connections across workers) ------------------------------------------

    def admit(self, worker: int, limit: int) -> bool:
        """Count one more session of ``worker``, unless ``limit`` are open across all workers."""
        self.acquire()
        try:
            if self.total.value >= limit:
                return False
            self.total.value += 1
            self.connections[worker] += 1
            return True
        finally:
            self.release()

    def leave(self, worker: int, count: int = 1) -> None:
        """``count`` sessions of ``worker`` ended."""
        self.acquire()
        try:
            self.connections[worker] -= count
            self.total.value -= count
        finally:
            self.release()

    def reset_worker(self, worker: int) -> None:
        """``worker`` died: its sessions are gone (the parent calls this)."""
        self.acquire()
        try:
            self.total.value -= self.connections[worker]
            self.connections[worker] = 0
        finally:
            self.release()


class _SharedCounter(_Counter):
    """A rule whose occurrence count is slot ``slot`` of the shared counters (``serial``: this
    rule's allocation, unique for the server's life, so a reused slot is never mistaken)."""

    def __init__(self, rule: Rule, slot: int, serial: int, cells: Any) -> None:
        super().__init__(rule)
        self.slot, self.serial, self._cells = slot, serial, cells
        self._drawn = 0  # random numbers of a seeded rule drawn (or skipped) by this process

    def fires(self) -> bool:
        """Count the occurrence in shared memory (the caller holds the lock) and decide as one
        process does; a seeded probability rule first skips the numbers other processes drew."""
        before = self._cells[self.slot]
        rule = self.rule
        if rule.schedule is Schedule.PROBABILITY and rule.seed >= 0:
            for _ in range(before - self._drawn):
                self.rng.random()
            self._drawn = before + 1
        self.seen = before
        fired = super().fires()
        self._cells[self.slot] = self.seen
        return fired


class SharedRuleSet(RuleSet):
    """The fault rules of all processes of one server (see the module doc). ``rules``: the
    configured ones, given by the process that creates the table (``create=True``)."""

    def __init__(self, state: SharedState, rules: tuple[Rule, ...] | list[Rule] = (), *, create: bool) -> None:
        super().__init__(rules if create else ())
        self._state = state
        self._generation = -1  # the table this process holds
        self._serial = 0  # allocations made so far (in the table)
        with state:
            if create:
                self._publish()
            else:
                self._sync()

    # -- the table ----------------------------------------------------------------------------

    def _sync(self) -> None:
        """Load the table when another process changed it (the caller holds the lock)."""
        generation = self._state.generation.value
        if generation == self._generation:
            return
        table = json.loads((self._state.folder / TABLE).read_text("utf-8"))
        held = {c.serial: c for c in self._counters if isinstance(c, _SharedCounter)}
        counters: list[_Counter] = []
        for entry in table["rules"]:
            counter = held.get(entry["serial"])
            if counter is None:
                counter = _SharedCounter(Rule.from_mapping(entry["rule"]), entry["slot"], entry["serial"],
                                         self._state.counters)
            counters.append(counter)
        with self._lock:
            self._counters = counters
            self._chaos_codes = dict(table["chaos"])
        self._serial = table["serial"]
        self._generation = generation

    def _publish(self) -> None:
        """Give each new rule a zeroed slot, write the table and bump the generation (the caller
        holds the lock and synced first)."""
        used = {c.slot for c in self._counters if isinstance(c, _SharedCounter)}
        free = (slot for slot in range(MAX_RULES) if slot not in used)
        counters: list[_Counter] = []
        for counter in self._counters:
            if not isinstance(counter, _SharedCounter):
                slot = next(free)
                self._serial += 1
                self._state.counters[slot] = 0
                counter = _SharedCounter(counter.rule, slot, self._serial, self._state.counters)
            counters.append(counter)
        with self._lock:
            self._counters = counters
        table = {
            "serial": self._serial, "chaos": self._chaos_codes,
            "rules": [{"slot": c.slot, "serial": c.serial, "rule": c.rule.to_json()}
                      for c in counters if isinstance(c, _SharedCounter)],
        }
        path = self._state.folder / TABLE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(table), "utf-8")
        os.replace(temporary, path)
        self._state.generation.value += 1
        self._generation = self._state.generation.value

    def _refresh(self) -> None:
        if self._state.generation.value != self._generation:
            with self._state:
                self._sync()

    # -- RuleSet, across processes ----------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        """Add a rule for every process."""
        with self._state:
            self._sync()
            super().add(rule)
            self._publish()
        return rule

    def clear(self) -> None:
        """Remove every rule, in every process."""
        with self._state:
            self._sync()
            super().clear()
            self._publish()

    def set_chaos(self, triggers: dict[str, Trigger]) -> None:
        """Replace the chaos rules, in every process."""
        with self._state:
            self._sync()
            super().set_chaos(triggers)
            self._publish()

    def rules(self) -> list[Rule]:
        """The rules in force (the table's latest)."""
        self._refresh()
        return super().rules()

    def chaos(self) -> dict[str, Trigger]:
        """Mailpit's chaos triggers (the table's latest)."""
        self._refresh()
        return super().chaos()

    def __len__(self) -> int:
        self._refresh()
        return super().__len__()

    def match(self, stage: Stage, client: str, sender: str | None = None,
              recipients: tuple[str, ...] | list[str] = ()) -> Rule | None:
        """As :meth:`RuleSet.match`, counting in shared memory; no rule anywhere: no lock taken."""
        if not self._counters and self._state.generation.value == self._generation:
            return None
        with self._state:
            self._sync()
            return super().match(stage, client, sender, recipients)
