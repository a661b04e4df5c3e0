// Static checks of the Dockerfile and .dockerignore (no Docker engine runs here).
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { NODE_FLAGS } from '../../src/shared/node-flags.js'

const ROOT = new URL('../../', import.meta.url)
const read = async (path: string): Promise<string> => readFile(new URL(path, ROOT), 'utf8')

interface Stage { from: string, name: string | undefined, lines: string[] }

function stages (dockerfile: string): Stage[] {
  const result: Stage[] = []
  const lines = dockerfile.replace(/\\\n\s*/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  for (const line of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line)
    if (from !== null) result.push({ from: from[1], name: from[2], lines: [] })
    else result.at(-1)?.lines.push(line)
  }
  return result
}

t.test('the Dockerfile builds in one stage and runs the compiled CLI as a non-root user in another', async (t) => {
  const all = stages(await read('Dockerfile'))
  t.ok(all.length >= 2, 'multi-stage')
  for (const stage of all) t.match(stage.from, /^node:24-(slim|alpine)$/, `${stage.name ?? 'stage'} uses node 24`)
  const [build, runtime] = [all[0], all.at(-1)!]
  t.ok(build.lines.some((line) => /^RUN npm install\b/.test(line) && !/--omit=dev/.test(line)), 'build stage installs every dependency')
  t.ok(build.lines.some((line) => /^RUN npm run build\b/.test(line)), 'build stage compiles')
  t.ok(runtime.lines.some((line) => /^RUN npm install .*--omit=dev/.test(line)), 'runtime installs production dependencies only')
  t.ok(runtime.lines.some((line) => new RegExp(`^COPY --from=${build.name} \\S*dist`).test(line)), 'runtime copies the compiled code from the build stage')
  const user = runtime.lines.filter((line) => /^USER\s/.test(line)).at(-1)
  t.ok(user, 'sets a user')
  t.notMatch(user, /^USER\s+(root|0)(:|$)/, 'not root')
  t.ok(runtime.lines.includes(`ENTRYPOINT ${JSON.stringify(['node', ...NODE_FLAGS, 'dist/cli.js'])}`.replaceAll('","', '", "')),
    'the entry point is the CLI with the Node flags of every coupons process (src/shared/node-flags.ts), so one image runs every role')
})

t.test('the image holds the flash-sale migrations where the compiled store looks for them', async (t) => {
  const runtime = stages(await read('Dockerfile')).at(-1)!
  const workdir = runtime.lines.filter((line) => /^WORKDIR\s/.test(line)).at(-1)?.split(/\s+/)[1]
  t.equal(workdir, '/app')
  t.ok(runtime.lines.includes('COPY migrations ./migrations'), 'the runtime stage copies migrations/ to /app/migrations')
  // dist/flash-sale/store.js resolves ../../migrations/, as src/flash-sale/store.ts does.
  t.equal(new URL('../../migrations/', 'file:///app/dist/flash-sale/store.js').pathname, '/app/migrations/')
  const ignored = (await read('.dockerignore')).split('\n').map((line) => line.trim())
  t.notOk(ignored.some((entry) => entry === 'migrations' || entry === 'migrations/'), '.dockerignore keeps migrations/ in the build context')
  t.ok(await read('migrations/0001_coupons-and-claims.sql'))
})

t.test('every stage copies patches/ before npm install, since npm\'s postinstall applies them', async (t) => {
  const pkg = JSON.parse(await read('package.json'))
  t.equal(pkg.scripts.postinstall, 'patch-package')
  t.ok(pkg.dependencies['patch-package'], 'a production dependency: the runtime stage installs with --omit=dev')
  for (const stage of stages(await read('Dockerfile'))) {
    const copy = stage.lines.findIndex((line) => /^COPY patches\b/.test(line))
    const install = stage.lines.findIndex((line) => /^RUN npm install\b/.test(line))
    t.ok(copy >= 0 && copy < install, `${stage.name ?? 'stage'} copies patches/ before npm install`)
  }
})

t.test('the entry point exists after npm run build', async (t) => {
  const pkg = JSON.parse(await read('package.json'))
  t.match(pkg.scripts.build, /tsconfig\.build\.json/)
  const tsconfig = JSON.parse(await read('tsconfig.build.json'))
  t.equal(tsconfig.compilerOptions.rootDir, 'src')
  t.equal(tsconfig.compilerOptions.outDir, 'dist', 'src/cli.ts compiles to dist/cli.js')
  t.ok(await read('src/cli.ts'))
})

t.test('.dockerignore keeps data, secrets and local builds out of the context', async (t) => {
  const ignored = (await read('.dockerignore')).split('\n').map((line) => line.trim())
  for (const entry of ['.git', 'node_modules', '.tools', 'data', '.data', '.env', 'dist', '*.gz']) {
    t.ok(ignored.includes(entry), `ignores ${entry}`)
  }
})

t.test('the build ships the dashboard page where the compiled route looks for it', async (t) => {
  const pkg = JSON.parse(await read('package.json'))
  t.match(pkg.scripts.build, /cpSync\('src\/api\/dashboard', 'dist\/api\/dashboard'/, 'npm run build copies the page beside the compiled code (the image copies dist/)')
  // dist/api/routes/dashboard.js resolves ../dashboard/, as src/api/routes/dashboard.ts does.
  t.equal(new URL('../dashboard/', 'file:///app/dist/api/routes/dashboard.js').pathname, '/app/dist/api/dashboard/')
  for (const file of ['index.html', 'dashboard.js', 'dashboard.css']) t.ok(await read(`src/api/dashboard/${file}`), file)
})
