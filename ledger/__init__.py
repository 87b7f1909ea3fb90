"""The usage ledger's domain core: entries, encoding, hashing, logs, rating and proofs (no gRPC, no CLI)."""
