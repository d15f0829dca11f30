"""Grafana dashboards for prescale, generated from code.

``definitions`` says what each dashboard shows (queries, units, layout) in plain dataclasses
from ``spec``; ``build`` turns a spec into Grafana JSON with grafana-foundation-sdk (pinned to
the Grafana 11.6 line in pyproject.toml); ``generate`` writes or checks the committed JSON.
"""
