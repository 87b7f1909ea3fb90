"""The log engine: entry encoding, the append step, Merkle math, replay verification, signed notes, proofs."""
