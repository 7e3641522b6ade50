import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
application = get_wsgi_application()

# Load every view module now, then leave the ~100,000 objects loaded so far (Django, DRF,
# the URLconf) out of garbage collection: a full collection then scans only what requests
# leave behind. Unfrozen, a full pass over that heap (80-100 ms on a loaded machine) put a
# 40 ms list page into the p95 tail every ~15 requests (bench/pages.py --gc-unfrozen).
# Under gunicorn --preload it also keeps those pages shared by the forked workers.
get_resolver().url_patterns  # noqa: B018 - imported for its side effect
gc.collect()
gc.freeze()
