"""Models a worker keeps loaded between jobs, least recently used dropped first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ModelCache:
    def __init__(self, capacity: int = 2):
        self.capacity = max(0, capacity)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.loads = 0  # how many times a loader actually ran (tests and logs read it)

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        self.loads += 1
        if self.capacity:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
