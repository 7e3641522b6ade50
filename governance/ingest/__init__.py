"""Usage ingestion: native JSON batches and OTLP/HTTP traces, stored first, evaluated later.

Modules: `records` (the one row shape both front doors produce), `native` (JSON batches),
`otlp_wire` (OTLP bodies in and out), `otlp` (gen_ai spans → events), `access` (token,
workload and rate checks with short-lived caches), `store` (the write path), `handoff` (the
evaluation task contract), `views` (the two plain hot-path views), `openapi` (their docs).
"""
