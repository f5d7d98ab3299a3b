"""What a driver changed on a real system, written to disk before each change.

Every real driver records the original value of anything it is about to change here first
(persist before acting) and forgets it once restored, so that `restore()` after a crash
still finds everything a previous run left changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gridflex.errors import DriverError


class Ledger:
    """A small persistent map from what was changed (e.g. ``suspend:123``) to its original
    value. In memory only when `path` is None."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, Any] = {}
        if self.path is not None and self.path.exists():
            try:
                self._entries = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError, TypeError) as e:
                raise DriverError(f"state file {self.path}: unreadable ({e}); fix or remove it") from None

    def remember(self, key: str, original: Any = None) -> None:
        """Record `key` before changing it; an earlier original is kept."""
        if key not in self._entries:
            self._entries[key] = original
            self._flush()

    def forget(self, key: str) -> None:
        if key in self._entries:
            del self._entries[key]
            self._flush()

    def get(self, key: str, default: Any = None) -> Any:
        return self._entries.get(key, default)

    def keys(self, prefix: str = "") -> list[str]:
        return [k for k in self._entries if k.startswith(prefix)]

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._entries.items()))

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _flush(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._entries, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as e:
            raise DriverError(f"state file {self.path}: cannot write ({e.strerror}); nothing was changed") from None
