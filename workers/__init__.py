"""dt-connector, job side: RQ job functions and the worker process.

The web side enqueues ``workers.jobs.forward`` by dotted path with RQ's JSON
serializer, so nothing in ``connector/`` imports this package.
"""
