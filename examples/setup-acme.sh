#!/usr/bin/env bash
# Set up org acme as the platform does when a customer signs up, before any usage arrives (examples/README.md):
# the payment processor's opaque reference on file (R19: never card data) and the new workspace's starter credit
# (R16). Safe to run again: the reference is already on file, and the grant's request ID makes it idempotent.
#
#   examples/setup-acme.sh                       # against 127.0.0.1:50051 (or $LEDGER_TARGET)
#   examples/setup-acme.sh --target HOST:PORT    # any further option is passed to every ledgerctl command
#
# Exit codes are ledgerctl's: 0 done, 1 the ledger said no, 2 usage error, 3 the server cannot be reached.
set -euo pipefail
ledgerctl="${LEDGERCTL:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/ledgerctl}"
org="${ORG:-acme}"

# R19: an org with a payment method on file is not deactivated when its credits run out; its invoices are charged.
"$ledgerctl" account payment-method set --org "$org" --reference "pm_${org}_example_0001" "$@"
# R16: the credit the platform gives a new workspace, applied to its first invoices before any card charge.
"$ledgerctl" credits grant --org "$org" --amount 25.00 --reason "starter credit for a new workspace" \
  --request-id "${org}-starter-credit" "$@"
"$ledgerctl" account show --org "$org" "$@"
