"""Gunicorn settings for Heroku (loaded by the top-level ``gunicorn.conf.py``).

* binds ``$PORT`` on all interfaces (Heroku's router connects from outside the dyno);
* ``WEB_CONCURRENCY`` worker processes (Heroku sets it per dyno size), threaded
  (``GUNICORN_THREADS``, default 4) because a push spends its time waiting on Redis;
* timeouts under Heroku's 30 s router limit and 30 s SIGTERM→SIGKILL window;
* no access log: the app writes one structured line per push itself.
"""

from __future__ import annotations

import os

bind = [f"[::]:{os.environ.get('PORT', '5000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 20
graceful_timeout = 20
keepalive = 5
# Clients are created per worker after fork; preloading would share nothing useful and
# would open the Redis pool in the master.
preload_app = False
accesslog = None
errorlog = "-"
loglevel = "warning"
# Heroku's router adds X-Forwarded-*; trust it (the buildpack sets the same default).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
