"""The topology server's bounded history: the changes of the last revisions, which an agent
resuming from a revision is replayed (revisions are the store's, so any cluster process's
history serves an agent that moves to it, when it reaches back far enough)."""

from __future__ import annotations

import collections

from netloom.topology.protocol import Obj


class History:
    """The changes of the last ``size`` revisions that changed something of the view."""

    def __init__(self, size: int) -> None:
        self._revs: collections.deque[tuple[int, list[Obj]]] = collections.deque(maxlen=size)
        self.base = 0  # the revision the view was loaded at: the history covers (base, now]

    def append(self, rev: int, objs: list[Obj]) -> None:
        self._revs.append((rev, objs))

    def covers(self, since: int, revision: int) -> bool:
        """True when the history holds every change after ``since`` (the view is at
        ``revision``)."""
        if since > revision:
            return False
        full = self._revs.maxlen is not None and len(self._revs) == self._revs.maxlen
        floor = self._revs[0][0] - 1 if full and self._revs else self.base
        return since >= floor

    def after(self, since: int) -> list[tuple[int, list[Obj]]]:
        """The changes after ``since``, oldest first."""
        pending: list[tuple[int, list[Obj]]] = []
        for rev, objs in reversed(self._revs):
            if rev <= since:
                break
            pending.append((rev, objs))
        pending.reverse()
        return pending


__all__ = ["History"]
