"""Storage adapters: the only code that speaks SQL (storage.sql)."""
