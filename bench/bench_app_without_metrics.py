"""bench_app without the request metrics (identity.metrics.RequestMetrics taken off the
WSGI stack): the baseline of bench/metrics.py. A look-up and GET /v1/me count nothing else."""

from bench_app import app

from identity.metrics import RequestMetrics

assert isinstance(app.wsgi_app, RequestMetrics)
app.wsgi_app = app.wsgi_app.app
