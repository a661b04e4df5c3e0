// The shape of the real coupon files and the codes planted in them (DESIGN section 1), as data the
// generator follows and the tests check against.

export interface FileShape {
  name: string
  /** lines of the real file */
  realLines: number
  /** length of its random codes */
  codeLength: number
}

export const FILE_SHAPES: readonly FileShape[] = [
  { name: 'couponbase1.gz', realLines: 107_260_777, codeLength: 8 },
  { name: 'couponbase2.gz', realLines: 107_260_776, codeLength: 9 },
  { name: 'couponbase3.gz', realLines: 98_566_152, codeLength: 10 }
]

/** The valid codes of the real files, and which of the three files hold them (1-based). */
export const REAL_PLANTED: ReadonlyArray<readonly [code: string, files: readonly number[]]> = [
  ['BIRTHDAY', [1, 2, 3]],
  ['BUYGETON', [1, 2, 3]],
  ['FIFTYOFF', [1, 2, 3]],
  ['FREEZAAA', [1, 2, 3]],
  ['GNULINUX', [1, 2, 3]],
  ['OVER9000', [1, 2, 3]],
  ['SIXTYOFF', [1, 2, 3]],
  ['HAPPYHRS', [1, 3]],
  // Decoys of the real files: one file each.
  ['SUPER100', [1]],
  ['MOODYHRS', [2]]
]

/** Near misses of real codes, each in one file only: a substring match would wrongly accept them. */
export const NEAR_MISS_DECOYS: ReadonlyArray<readonly [code: string, file: number]> = [
  ['HAPPYHOURS', 3],
  ['BUYGETONE', 2],
  ['OVER900000', 3]
]
