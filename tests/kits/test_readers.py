"""Every reader kind of the jobs' union (ReaderKind) through the reader kit."""

from __future__ import annotations

from trainyard.io.readers import ReaderKind
from trainyard.testing.readers import ReaderKit


class TestReaderKinds(ReaderKit):
    union = ReaderKind
