"""MVSep's JSON shapes, built from domain records: what `separation/get`, history, the demo list, the queue and
the create answers look like on the wire. Entry points (the API, the worker's webhooks) present with these; the
domain below knows nothing of them."""
