"""The Store port: SQLAlchemy Core over SQLite, MySQL/MariaDB or PostgreSQL."""
