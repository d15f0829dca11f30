"""Errors of the local stack; each names the component, what failed and where its log is."""

from __future__ import annotations


class StackError(Exception):
    """A part of the local stack could not be started or used."""
