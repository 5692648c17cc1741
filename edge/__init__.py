"""What every HTTP edge needs (issue 18 item 1; docs/architecture.md): JSON answers, the client's address and the
cached key lookup. The REST API (:mod:`gateway`) and the connectors' endpoints (:mod:`connectors`) both build on
it, so a connector never reaches into the gateway. It depends on :mod:`core` and Flask, nothing else.
"""
