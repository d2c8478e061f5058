"""Parta: the application (settings, dispatcher factory, middlewares, outbox)."""
