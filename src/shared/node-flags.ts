// The Node flags every coupons process starts with: the Docker image's ENTRYPOINT, the roles that
// `npm start` and the end-to-end runs start (scripts/lib/role-process.ts), and the ingest
// sandboxes, which BullMQ forks (src/queues/ingest-worker.ts). A test checks the Dockerfile.
//
// V8 sets a process's first old-generation limit from its JavaScript heap, about 20 MB in these
// processes, and counts the Buffers they stream through against it: an ingest sandbox
// (decompressed chunks) and the aggregator (fetched responses) ran a full collection every few
// tens of megabytes, 8 to 12 per scale-0.1 file. Starting the limit at 128 MB leaves those short-
// lived Buffers to fewer collections (2 per file); the peak RSS stayed within a few MB (issue 15,
// docs/BENCHMARKS.md).
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128']
