"""Production gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Sync workers are processes: GEOS prepared geometries are not thread-safe, and one request's
scoring is CPU-bound, so threads would not add throughput. ``preload_app`` loads the region layer
once in the master before the workers fork.
"""

import os

bind = os.environ.get("GRIDMAP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
worker_class = "sync"
preload_app = True
timeout = 120
# one control socket per user home would clash between several gridmap servers on one machine
control_socket_disable = True
accesslog = os.environ.get("GRIDMAP_ACCESS_LOG") or None
