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
