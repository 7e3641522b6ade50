"""Form helpers shared by every console form."""

from datetime import UTC, datetime

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from governance.errors import DomainError

# Instants every zone can convert and the database can store and read back: read in the
# viewer's zone, 9999-12-31 23:00 typed west of UTC is in year 10000 (an OverflowError on
# SQLite; a row PostgreSQL stores and psycopg then cannot read), and 0001-01-01 east of UTC
# is before year 1. Every typed date-time, in forms and list filters, is held to these.
DATETIME_BOUNDS = [
    MinValueValidator(datetime(1900, 1, 1, tzinfo=UTC)),
    MaxValueValidator(datetime(9998, 12, 31, tzinfo=UTC)),
]


def form_add_service_error(form: forms.Form, error: DomainError | ValidationError) -> forms.Form:
    """Show what a service refused on the form that asked for it.

    A DomainError lands on its field when the form has that field, otherwise form-wide (its
    message names the rule or conflict, so it is shown as is). A model ValidationError from a
    service's full_clean() is spread over the fields the same way.
    """
    if isinstance(error, DomainError):
        field = error.field if error.field in form.fields else None
        form.add_error(field, ValidationError(error.message, code=error.code))
        return form
    if hasattr(error, "error_dict"):
        for name, messages in error.message_dict.items():
            form.add_error(name if name in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)
    return form


class DateTimeLocalInput(forms.DateTimeInput):
    """The browser's own date-time picker, no JS needed."""

    input_type = "datetime-local"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%dT%H:%M")


def comma_list(value: str) -> list[str]:
    """`a, b,,c` → ["a", "b", "c"]: free-text lists entered comma- or line-separated."""
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]
