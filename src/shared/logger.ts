// pino for every process. Pretty output only when a human is watching (stdout is a TTY);
// otherwise one JSON object per line for the log pipeline.
import { pino, type Logger, type LoggerOptions } from 'pino'
import { logLevel as KafkaLogLevel, type logCreator as KafkaLogCreator } from 'kafkajs'

export type { Logger } from 'pino'

export function loggerOptions (level: string, name?: string): LoggerOptions {
  return {
    level,
    name,
    transport: process.stdout.isTTY ? { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } : undefined
  }
}

export function createLogger (level: string, name?: string): Logger {
  return pino(loggerOptions(level, name))
}

const kafkaLevels: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug'
}

/** Routes KafkaJS's own logs into a pino child, object first like every other log line. */
// The producer's retries are bounded on purpose (createKafka): a send that keeps failing abandons
// the whole segment, which is then retried from scratch, so exactly-once per record is not needed.
const EXPECTED_WARNINGS = new Set(['Limiting retries for the idempotent producer may invalidate EoS guarantees'])

export function kafkaLogCreator (logger: Logger): KafkaLogCreator {
  // 'lib', not 'component': the callers' loggers already name their component.
  const log = logger.child({ lib: 'kafkajs' })
  return () => ({ namespace, level, log: entry }) => {
    const { message, timestamp: _timestamp, logger: _logger, ...fields } = entry
    if (EXPECTED_WARNINGS.has(message)) return
    log[kafkaLevels[level] ?? 'info']({ namespace, ...fields }, message)
  }
}

/** The KafkaJS level that lets through what the pino level would print. */
export function kafkaLogLevel (level: string): KafkaLogLevel {
  switch (level) {
    case 'trace':
    case 'debug': return KafkaLogLevel.DEBUG
    case 'info': return KafkaLogLevel.INFO
    case 'warn': return KafkaLogLevel.WARN
    case 'silent': return KafkaLogLevel.NOTHING
    default: return KafkaLogLevel.ERROR
  }
}
