from django.http import Http404
from django.shortcuts import render
from django.views.defaults import page_not_found

from .errors import BerthError, NotFound


class BerthErrorPages:
    """Pages (the API has its own handler) answer a domain error with its message: a 404 for
    what does not exist, the error's own status with the message otherwise — never a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, NotFound):
            return page_not_found(request, Http404(exception.message))
        if isinstance(exception, BerthError):
            return render(request, "error.html", {"message": exception.message}, status=exception.status)
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
