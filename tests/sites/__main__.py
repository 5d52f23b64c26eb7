"""Serve one fixture site in the foreground: ``python -m tests.sites [NAME] [--port N]``."""

from __future__ import annotations

import argparse

from admin.demosite.server import serve
from tests.sites.catalog import BUILDERS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sites", description=__doc__)
    parser.add_argument("name", nargs="?", default="pirate", choices=sorted(BUILDERS))
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    args = parser.parse_args(argv)
    site, expected = BUILDERS[args.name](port=args.port)
    serve(
        site,
        banner=f"{expected.name}: {expected.start_url} ({expected.page_count} pages, "
        f"{len(expected.images)} images to find; Ctrl-C to stop)",
    )


if __name__ == "__main__":
    main()
