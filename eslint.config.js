import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', '.data/**', 'data/**', 'coverage/**', '.tap/**', 'infra/kafka/lib/**']
  }),
  {
    rules: {
      // TypeBox's idiom names a schema and its static type alike (`const Run = Type.Object(…)`,
      // `type Run = Static<typeof Run>`); TypeScript itself rejects real redeclarations.
      '@typescript-eslint/no-redeclare': 'off'
    }
  },
  {
    // The dashboard's script runs in the browser, as a plain script (no bundler).
    files: ['src/api/dashboard/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { document: 'readonly', sessionStorage: 'readonly' } }
  }
]
