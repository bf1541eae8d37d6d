"""django-prometheus' request metrics (the same families, labels and values) at about a third of their cost a request.

django-prometheus' middlewares go through MiddlewareMixin's hooks, look each labelled series up again with keyword
labels, and build `request.headers` (every header of the request) to read two of them: about 9% of the CPU of a single
prediction over HTTP, more than its counters cost. These subclasses record the same thing as plain middlewares: the
labelled series are kept once looked up (`series`), and the headers are read from the WSGI environment. Everything
else (process_view's count by view, templates, exceptions) is django-prometheus' own.
"""

from functools import lru_cache
from timeit import default_timer
from typing import Any

from django.http import HttpRequest, HttpResponse
from django_prometheus import middleware


@lru_cache(maxsize=4096)
def series(metric: Any, *labels: str) -> Any:
    """The series of `metric` with these label values, in the order of its label names, kept once looked up. Label
    values come from short lists (methods, statuses, views, charsets); the bound is for the unforeseen."""
    return metric.labels(*labels)


class PrometheusBeforeMiddleware(middleware.PrometheusBeforeMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        metrics = self.metrics
        metrics.requests_total.inc()
        started = default_timer()
        response = self.get_response(request)
        metrics.responses_total.inc()
        metrics.requests_latency_before.observe(default_timer() - started)
        return response


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        metrics = self.metrics
        method = self._method(request)
        meta = request.META
        series(metrics.requests_by_method, method).inc()
        series(metrics.requests_by_transport, self._transport(request)).inc()
        if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            metrics.requests_ajax.inc()
        metrics.requests_body_bytes.observe(int(meta.get("CONTENT_LENGTH") or 0))
        started = default_timer()
        response = self.get_response(request)
        status = str(response.status_code)
        view = self._get_view_name(request)
        series(metrics.responses_by_status, status).inc()
        series(metrics.responses_by_status_view_method, status, view, method).inc()
        if hasattr(response, "charset"):
            series(metrics.responses_by_charset, str(response.charset)).inc()
        if getattr(response, "streaming", False):
            metrics.responses_streaming.inc()
        if hasattr(response, "content"):
            metrics.responses_body_bytes.observe(len(response.content))
        series(metrics.requests_latency_by_view_method, view, request.method).observe(default_timer() - started)
        return response
