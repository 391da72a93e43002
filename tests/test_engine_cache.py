"""Workers keep recently used models loaded; the least recently used goes first."""

from openmvsep.engine.cache import ModelCache


def test_model_cache_keeps_recent_models():
    cache = ModelCache(capacity=2)
    loads = []

    def loader(name):
        return lambda: loads.append(name) or f"model-{name}"

    assert cache.get("a", loader("a")) == "model-a"
    assert cache.get("b", loader("b")) == "model-b"
    assert cache.get("a", loader("a")) == "model-a"  # hit: no load
    cache.get("c", loader("c"))  # evicts b, the least recently used
    assert "a" in cache and "c" in cache and "b" not in cache
    assert loads == ["a", "b", "c"] and cache.loads == 3


def test_capacity_zero_keeps_nothing():
    cache = ModelCache(capacity=0)
    cache.get("a", lambda: 1)
    cache.get("a", lambda: 1)
    assert cache.loads == 2 and len(cache) == 0
