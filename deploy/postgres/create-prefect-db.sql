-- compose.yaml: the postgres image creates the jointcase database and user (POSTGRES_DB, POSTGRES_USER); the
-- Prefect server gets a database of its own on the same server, owned by the same user.
CREATE DATABASE prefect;
