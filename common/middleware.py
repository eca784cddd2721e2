import logging

from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.defaults import page_not_found

from .errors import DATABASE_RETRY_AFTER, DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE, BerthError, NotFound

logger = logging.getLogger(__name__)


class BerthErrorPages:
    """Pages (the API has its own handler) answer a domain error with its message: a 404 for
    what does not exist, the error's own status with the message otherwise — never a 500. A lost
    database connection answers 503 with a page that needs no database to render."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, NotFound):
            return page_not_found(request, Http404(exception.message))
        if isinstance(exception, BerthError):
            return render(request, "error.html", {"message": exception.message}, status=exception.status)
        if isinstance(exception, DATABASE_UNAVAILABLE):
            logger.warning("database unavailable during %s: %s", request.path, exception)
            page = render_to_string("503.html", {"message": DATABASE_UNAVAILABLE_MESSAGE})
            return HttpResponse(page, status=503, headers=DATABASE_RETRY_AFTER)
        return None


class ContentSecurityPolicy:
    """Sends settings.BERTH_CONTENT_SECURITY_POLICY on every response that has none: scripts only
    from our own static files (no inline script runs; figures travel as JSON data blocks), no
    framing, forms and fetches to this site only. Plotly and htmx set inline styles, hence
    style-src 'unsafe-inline'."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.policy = settings.BERTH_CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


class RefuseNulCharacters:
    """A NUL character in the path or the query string (%00) is refused with a 400 before any
    view runs: no name or parameter in Berth holds one, and PostgreSQL cannot compare text with
    one (every lookup by name would be a 500)."""

    message = "The address holds a NUL character (%00), which no name or parameter in Berth contains."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()
        ):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": self.message, "errors": {}}, status=400)
            return HttpResponseBadRequest(self.message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
