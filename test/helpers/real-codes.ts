// The published facts about the real files (DESIGN section 1), written out here rather than taken
// from src/gen, so that the tests check the generator and the pipeline against them.

/** The 8 valid codes of the real files. */
export const REAL_VALID = ['BIRTHDAY', 'BUYGETON', 'FIFTYOFF', 'FREEZAAA', 'GNULINUX', 'HAPPYHRS', 'OVER9000', 'SIXTYOFF']
