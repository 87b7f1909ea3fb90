"""SupportService: dispute reconstruction (R27) and adjustments (R23) over gRPC."""

from __future__ import annotations

import grpc
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from ledger.dispute import adjust_charges, reconstruct_charges
from ledger.intake import Ledger
from ledger.orgs import require_org
from ledger.ports import DisputeRollups
from ledger.usage.follower import RollupFollower
from wire.support import adjustment_to_proto, corrects_from_proto, query_from_proto, reconstruction_to_proto


class SupportServicer(spb_grpc.SupportServiceServicer):  # type: ignore[misc]
    def __init__(
        self, ledger: Ledger, rollups: DisputeRollups | None = None, follower: RollupFollower | None = None
    ) -> None:
        self.ledger = ledger
        self.rollups = rollups  # what lookups rate long sessions from (R25); None: they read every entry
        self.follower = follower  # the server's one rollup writer (docs/adr/0003), shared with usage and billing

    def ReconstructCharges(
        self, request: spb.ReconstructChargesRequest, context: grpc.ServicerContext
    ) -> spb.ReconstructChargesResponse:
        if request.org_id:
            require_org(self.ledger.store, request.org_id)
        query = query_from_proto(request)
        result = reconstruct_charges(
            self.ledger, query, with_proofs=request.include_proofs, rollups=self.rollups, follower=self.follower
        )
        return reconstruction_to_proto(result)

    def AdjustCharges(
        self, request: spb.AdjustChargesRequest, context: grpc.ServicerContext
    ) -> spb.AdjustChargesResponse:
        adjustment, ref, duplicate = adjust_charges(
            self.ledger,
            request.org_id,
            request.ticket,
            request.amount,
            request.reason,
            corrects_from_proto(request.corrects),
            request.request_id or None,
        )
        return adjustment_to_proto(adjustment, ref, duplicate)
