// A batching appender for a Node.js control plane: the pattern of client/appender.py (issue #26).
//
//   npm install                                   # in examples/node-appender
//   node appender.mjs 127.0.0.1:50051 1000        # 1,000 single events for org node-demo, sent in batches
//
// append(event) returns a promise that resolves with the ledger's AppendResult (log, sequence, entry hash,
// duplicate) only once the ledger acknowledged the event. Events wait until maxBatch (1,000) are waiting or the
// oldest waited maxDelayMs (5 ms); one AppendEvents call is in flight at a time, so batches land in order, each
// whole. UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried with jittered doubling backoff and the
// SAME event IDs: R24 answers an event already appended with its original entry, so a retry never appends twice.
// A batch refused for good (a malformed event, an R24 conflict) is split in halves until the events at fault fail
// alone, each with its own error, while every other event lands.
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED]);

export function ledgerClient(target) {
  const definition = protoLoader.loadSync("usageledger/v1/ledger.proto", {
    includeDirs: [path.join(here, "..", "..", "proto")],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const { LedgerService } = grpc.loadPackageDefinition(definition).usageledger.v1;
  return new LedgerService(target, grpc.credentials.createInsecure());
}

export class BatchingAppender {
  constructor(client, { maxBatch = 1000, maxDelayMs = 5, retries = 8, timeoutMs = 30000 } = {}) {
    Object.assign(this, { client, maxBatch, maxDelayMs, retries, timeoutMs });
    this.waiting = []; // { event, resolve, reject }
    this.timer = null;
    this.sending = Promise.resolve(); // the one call in flight
    this.closed = false;
  }

  append(event) {
    if (this.closed) return Promise.reject(new Error("append() after close()"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ event, resolve, reject });
      if (this.waiting.length >= this.maxBatch) this.#sendWaiting();
      else if (this.timer === null) this.timer = setTimeout(() => this.#sendWaiting(), this.maxDelayMs);
    });
  }

  // Send what waits now; resolves once every event appended so far is acknowledged or failed.
  async flush() {
    while (this.waiting.length > 0) this.#sendWaiting();
    await this.sending;
  }

  async close() {
    this.closed = true;
    await this.flush();
    this.client.close();
  }

  #sendWaiting() {
    clearTimeout(this.timer);
    this.timer = null;
    const batch = this.waiting.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    if (this.waiting.length > 0) this.timer = setTimeout(() => this.#sendWaiting(), this.maxDelayMs);
    this.sending = this.sending.then(() => this.#send(batch));
  }

  async #send(batch) {
    let results;
    try {
      results = await this.#appendWithRetries(batch.map((p) => p.event));
    } catch (err) {
      if (batch.length === 1 || RETRYABLE.has(err.code)) {
        for (const p of batch) p.reject(err);
        return;
      }
      const middle = batch.length >> 1;
      await this.#send(batch.slice(0, middle));
      await this.#send(batch.slice(middle));
      return;
    }
    batch.forEach((p, i) => p.resolve(results[i]));
  }

  async #appendWithRetries(events) {
    let delay = 50;
    for (let attempt = 0; ; attempt++) {
      try {
        return await new Promise((resolve, reject) => {
          const deadline = new Date(Date.now() + this.timeoutMs);
          this.client.AppendEvents({ events }, { deadline }, (err, response) =>
            err ? reject(err) : resolve(response.results),
          );
        });
      } catch (err) {
        if (!RETRYABLE.has(err.code) || attempt >= this.retries) throw err;
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }
}

// A billing-rules.md event as the proto spells it: occurred_at is the Timestamp occurTime.
function requestStarted(id, at) {
  return {
    eventId: id,
    orgId: "node-demo",
    endpointId: "ep-1",
    workloadId: "wl-1",
    workloadKind: "WORKLOAD_KIND_SERVING",
    instanceType: "A100",
    type: "EVENT_TYPE_REQUEST_STARTED",
    requestId: id,
    occurTime: { seconds: Math.floor(at / 1000), nanos: (at % 1000) * 1e6 },
  };
}

async function main() {
  const [target = "127.0.0.1:50051", countText = "1000"] = process.argv.slice(2);
  const count = Number(countText);
  const appender = new BatchingAppender(ledgerClient(target));
  const at = Date.parse("2026-10-05T09:00:00Z");
  const prefix = `node-${Date.now().toString(36)}`;
  const acknowledged = await Promise.all(
    Array.from({ length: count }, (_, i) => appender.append(requestStarted(`${prefix}-${i}`, at + i))),
  );
  await appender.close();
  const fresh = acknowledged.filter((r) => !r.duplicate).length;
  console.log(`${acknowledged.length} events acknowledged (${fresh} new), last at ${acknowledged.at(-1).logId}:${acknowledged.at(-1).sequence}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`node-appender: ${err.message}`);
    process.exit(err.code === grpc.status.UNAVAILABLE ? 3 : 1);
  });
}
