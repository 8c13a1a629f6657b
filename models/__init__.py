"""SQLModel tables, the database engine and sessions, Alembic migrations. No business rules."""
