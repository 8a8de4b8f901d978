-- One database per service that keeps a PostgreSQL store: each runs its own sqlx migrations.
CREATE DATABASE gatehouse_audit;
CREATE DATABASE gatehouse_vault;
