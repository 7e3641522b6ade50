"""Usage ingestion: native JSON batches and OTLP/HTTP traces, stored first, evaluated later.

Modules: `records` (the one row shape both front doors produce), `native` and `otlp` (decoding
and mapping), `access` (token, workload and rate checks with short-lived caches), `store` (the
write path), `handoff` (the evaluation task contract), `views` (the two plain hot-path views),
`openapi` (their documentation).
"""
