const ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** A random candidate code: 8 to 10 ASCII letters and digits, either case. */
export function randomCode (): string {
  const length = 8 + Math.floor(Math.random() * 3)
  let code = ''
  for (let i = 0; i < length; i++) code += ALNUM[Math.floor(Math.random() * ALNUM.length)]
  return code
}
