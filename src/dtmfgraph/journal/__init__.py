"""The per-call event journal the console reads (see :mod:`.journal`)."""

from .audio import AudioRing
from .journal import CallJournal, Journal
from .live import Hub, TooManyWatchersError, Watcher

__all__ = ["AudioRing", "CallJournal", "Hub", "Journal", "TooManyWatchersError", "Watcher"]
