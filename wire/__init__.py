"""The wire layer: protobuf <-> domain mapping shared by the server and the client, one module per job.

convert (events, entries, log heads, timestamps), checkpoints (signed notes, leaves), billing, account, pricing,
usage, support (disputes and adjustments), paging (AIP-158 tokens), status (domain errors as google.rpc.Status),
private_files (key files both sides read). Nothing here checks content: ledger/ validates (docs/adr/0002).
"""
