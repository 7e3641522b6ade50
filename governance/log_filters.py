"""Logging filters named in settings.LOGGING."""

import logging


class RefusalsWithoutTraceback(logging.Filter):
    """A refused request (403, 404, …) is logged as one line: Django attaches the
    PermissionDenied or Http404 that produced it, and a traceback per refusal buries the
    server errors that need one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info = None
            record.exc_text = None
        return True
