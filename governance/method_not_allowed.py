"""A console page for a wrong HTTP method.

Django's require_POST answers with an empty 405, which a browser shows as its own blank
error page: reached by typing a form's address, or by a bookmark. Console paths get a page
that says what happened and links on; the API's 405s (DRF's, with a JSON body) are left as
they are."""

from django.shortcuts import render


class ConsoleMethodNotAllowedMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code != 405
            or response.content
            or request.path_info.startswith(("/api/", "/v1/"))
        ):
            return response
        page = render(request, "405.html", {"request_path": request.path}, status=405)
        page["Allow"] = response.get("Allow", "")
        return page
