"""The list filters' ordering, shared by every console list and REST list that sorts."""

import django_filters


class StableOrderingFilter(django_filters.OrderingFilter):
    """Orders by the chosen fields, then by `tie_break` (which ends in a unique field), so
    rows that tie on the chosen field (thousands of workloads share a status) keep one order
    from page to page: paging neither repeats nor skips a row.

    Empty choices are no ordering: django-filter cleans `?ordering=,` to `["", ""]`, which as
    field names made `order_by("")` fail with a 500 (found by schemathesis)."""

    def __init__(self, *args, tie_break: tuple[str, ...] = ("-id",), **kwargs):
        self.tie_break = tie_break
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        ordering = [self.get_ordering_value(param) for param in value or () if param]
        if not ordering:
            return qs
        chosen = {field.lstrip("-") for field in ordering}
        return qs.order_by(
            *ordering, *(field for field in self.tie_break if field.lstrip("-") not in chosen)
        )
