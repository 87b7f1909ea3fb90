"""The wire layer: protobuf <-> domain mapping shared by the server and the client."""
