"""Storage: the database connection, migrations and one module of queries per aggregate."""
