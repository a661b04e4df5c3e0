#!/usr/bin/env node
// `coupons <command>`: one entry point for every process and tool (DESIGN section 3). Each command
// loads only its own modules, so `coupons gen` does not pull in Fastify.

interface Command {
  /** what follows the command's name */
  args?: string
  summary: string
  run: (argv: string[]) => Promise<void>
}

const commands: Record<string, Command> = {
  gen: {
    args: '--out DIR --scale S --seed N',
    summary: 'write synthetic coupon files and answers.json',
    run: async (argv) => { await (await import('./gen/gen-command.js')).genCommand(argv) }
  },
  ingest: {
    args: '<file…>',
    summary: 'produce files to Kafka directly, without the queue (names from COUPON_FILES, or paths to them)',
    run: async (argv) => { await (await import('./ingest/ingest-command.js')).ingestCommand(argv) }
  },
  worker: {
    summary: 'run the ingest workers alone (set INGEST_WORKER=false on the api)',
    run: async (argv) => { await (await import('./queues/worker-command.js')).workerCommand(argv) }
  },
  aggregator: {
    summary: 'follow coupons.segments, decide the valid set and swap it into Redis',
    run: async (argv) => { await (await import('./aggregator/aggregator-command.js')).aggregatorCommand(argv) }
  },
  'flash-sale': {
    summary: 'apply the flash-sale requests from Kafka to PostgreSQL and reply (EVENT_DRIVEN_ENABLED)',
    run: async (argv) => { await (await import('./flash-sale/flash-sale-command.js')).flashSaleCommand(argv) }
  },
  api: {
    summary: 'serve the HTTP API (and the ingest worker unless INGEST_WORKER=false)',
    run: async (argv) => { await (await import('./api/server.js')).apiCommand(argv) }
  }
}

function usage (): string {
  return ['usage: coupons <command> [options]', '', ...Object.entries(commands).map(([name, c]) => `  ${`${name} ${c.args ?? ''}`.padEnd(40)} ${c.summary}`)].join('\n')
}

const [name, ...argv] = process.argv.slice(2)
const command = name === undefined ? undefined : commands[name]
if (command === undefined) {
  console.error(name === undefined || name === '--help' ? usage() : `unknown command "${name}"\n\n${usage()}`)
  process.exit(name === '--help' ? 0 : 2)
}
try {
  await command.run(argv)
} catch (err) {
  console.error(`coupons ${name}: ${(err as Error).message}`)
  process.exitCode = 1
}
