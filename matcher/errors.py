"""Errors about operator-supplied input (reference pages, crawled images)."""

from __future__ import annotations


def _one_line(text: str) -> str:
    # File and member names come from untrusted archives and file systems; a newline or
    # control character in one must not split or forge lines in an operator's log.
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class InputError(ValueError):
    """An input cannot be used, for a reason an operator can act on.

    ``source`` names the input: a file path, ``archive.cbz:member.png`` or ``book.pdf#page=3``.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = _one_line(source)
        self.reason = _one_line(reason)
        super().__init__(f"{self.source}: {self.reason}")

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # ValueError's default pickling would pass the joined message as the only argument.
        return (type(self), (self.source, self.reason))
