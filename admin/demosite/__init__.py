"""MangaFX, the bundled sample "pirate site" the demo crawls, and the small HTTP server and
page builders it is made of (also used by the test suite's fixture sites in tests/sites).

Everything it serves is generated on the fly from Mamoru's own sample works
(``admin.samples``), so it carries no third-party content, and it only ever listens on
loopback.
"""
