"""The `ledgerctl` command: the client's commands, composed with the SQL store for those that open the database."""
