"""The web console at ``/console/``: pages over the same operation handlers as the API, as the signed-in
principal (``app.ConsoleApp``); built and mounted by ``server/runtime/``."""
