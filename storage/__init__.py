"""Storage: models, the engine and session factory, repositories, migrations.

Imports nothing from `bot/` or `handlers/`.
"""
