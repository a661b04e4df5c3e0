// One error base for every role: a stable code for logs, alerts and tests, the cause, and whether
// retrying the same work can help (BullMQ processors turn retriable=false into UnrecoverableError
// so that a corrupt file is not read five times).

/**
 * Every code a CouponsError can carry, in one list (after platformatic/kafka's `errorCodes`): a
 * misspelled code does not compile, in the code that throws it nor in a test that matches on it.
 */
export const errorCodes = [
  'CONFIG_INVALID',
  'SEGMENTS_RECORD_INVALID',

  'KAFKA_TOPIC_MISSING',
  'KAFKA_PARTITIONS_MISMATCH',
  /** KAFKA_REPLICATION_FACTOR asks for more replicas than the cluster has brokers */
  'KAFKA_REPLICATION_INVALID',
  'KAFKA_NO_LEADER',
  'KAFKA_SEGMENTS_WRITE_FAILED',

  'INGEST_NO_FILES',
  'INGEST_UNKNOWN_FILE',
  'INGEST_DUPLICATE_FILE',
  'INGEST_BAD_FILE_NAME',
  'INGEST_FILE_MISSING',
  'INGEST_FILE_UNREADABLE',
  'INGEST_TRUNCATED_GZIP',
  'INGEST_CORRUPT_GZIP',
  'INGEST_READ_FAILED',
  /** written in place while it was read (size, mtime or inode differ between the open and the end) */
  'INGEST_FILE_CHANGED',
  'INGEST_LINE_TOO_LONG',
  'INGEST_ABORTED',
  'INGEST_LOCK_LOST',
  /** Redis did not confirm the file lock in time: the holder stops before the lock could expire */
  'INGEST_LOCK_UNREACHABLE',
  /** a partial run under a KAFKA_PARTITIONS other than the live set's: only a full run re-partitions */
  'INGEST_PARTITIONS_CHANGED',
  'INGEST_KAFKA_FAILED',
  'INGEST_FAILED',

  'AGGREGATOR_FILES_MISSING',
  'AGGREGATOR_PARTITIONS_MISMATCH',
  'AGGREGATOR_WRONG_PARTITION',
  'AGGREGATOR_COUNT_MISMATCH',
  'AGGREGATOR_RECORDS_MISSING',
  'AGGREGATOR_RECORD_FORMAT',
  'AGGREGATOR_BAD_RECORD',
  'AGGREGATOR_DECIDE_FAILED',
  'AGGREGATOR_STAGING_FAILED',
  'AGGREGATOR_STAGING_INCOMPLETE',
  'AGGREGATOR_BAD_MANIFEST',
  'AGGREGATOR_BAD_PLAN',
  'AGGREGATOR_REBALANCED',
  'AGGREGATOR_PLAN_CHANGED',
  'AGGREGATOR_RUN_EXPIRED',
  'AGGREGATOR_CLOSING',

  // flash sale (DESIGN section 11). The routes answer UNAVAILABLE and OUTCOME_UNKNOWN with 503 and
  // say in the body whether the request may still have been applied.
  /** surely not applied (PostgreSQL or Kafka unreachable, a transient database error): safe to retry */
  'FLASH_SALE_UNAVAILABLE',
  /** may have been applied (the connection was lost after the statement or COMMIT was sent, a reply came too late) */
  'FLASH_SALE_OUTCOME_UNKNOWN',
  /** the database refused the statement for a reason a retry does not fix (a missing table, a bug) */
  'FLASH_SALE_STORE_FAILED',
  /** a request on a Kafka topic that is not one of ours (unparseable, no reply topic): dead-lettered at once */
  'FLASH_SALE_BAD_MESSAGE',
  /** a reply over Kafka's message size (a coupon read with tens of thousands of claimants) */
  'FLASH_SALE_REPLY_TOO_LARGE'
] as const

export type ErrorCode = typeof errorCodes[number]

export interface CouponsErrorOptions {
  cause?: unknown
  retriable?: boolean
}

export class CouponsError extends Error {
  readonly code: ErrorCode
  readonly retriable: boolean

  constructor (code: ErrorCode, message: string, options: CouponsErrorOptions = {}) {
    super(message, { cause: options.cause })
    this.name = 'CouponsError'
    this.code = code
    this.retriable = options.retriable ?? false
  }
}

export function isCouponsError (err: unknown, code?: ErrorCode): err is CouponsError {
  return err instanceof CouponsError && (code === undefined || err.code === code)
}
