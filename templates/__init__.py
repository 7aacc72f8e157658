"""Jinja2 templates shipped with fi-campaign."""
