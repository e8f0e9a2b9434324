"""Why an event cannot be applied: the exceptions handlers raise, mapped to retry or dead letter."""

from __future__ import annotations


class EventRejected(Exception):
    """The event is well-formed but can never be processed: dead-lettered at once, with the text."""


class ProgramMismatch(EventRejected):
    """The event names a record that belongs to another program: never applied, dead-lettered."""


class UnknownReference(Exception):
    """The event names something this service does not know (yet): retried, then dead-lettered.

    Retrying first covers the race where the event that introduces the thing is still in flight
    on another subject.
    """
