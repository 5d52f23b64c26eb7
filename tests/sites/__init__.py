"""Fixture "pirate sites" on 127.0.0.1 for the crawler tests and the demo.

``server.Site`` is the HTTP server (route table, request log); ``catalog`` builds one site per
discovery path and returns it with ``expected.Expected``, the data a crawler test asserts.
``python -m tests.sites NAME`` serves one of them in the foreground.
"""

from admin.demosite.expected import Expected, SampleRef
from admin.demosite.handlers import Request, Response
from admin.demosite.server import Site, serve

__all__ = ["Expected", "Request", "Response", "SampleRef", "Site", "serve"]
