"""client package: the client library and the ledgerctl command line."""

import os

# gRPC's C core reads GRPC_VERBOSITY when grpc is first imported, and at its default writes handshake failures
# ("ssl_transport_security.cc ... Handshake failed") straight onto the terminal, before ledgerctl can say what
# went wrong in its own words (issue #25). Set here, ahead of any import of grpc by this package; an explicit
# GRPC_VERBOSITY (for debugging a connection) still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
