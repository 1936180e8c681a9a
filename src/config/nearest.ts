// The valid name a misspelt one was probably meant to be: `token_buckt` -> token_bucket,
// `limts` -> limits, `--prety` -> --pretty. Shared by the policy's problems and the CLI's flags.

/** Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`. */
export function editDistance(a: string, b: string): number {
  // Three rows of the optimal string alignment table: two back for a swap.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const replace = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + replace);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, before[j - 2]! + 1);
      current.push(best);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The candidate closest to `word`, ignoring case, if it is close enough to be a slip: a third of
 * the word's letters (at least one) may differ. Undefined when none is, or when two tie.
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  // Long inputs are no one's typo, and would cost a table of their length times each candidate's.
  if (word.length > 64) return undefined;
  const allowed = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  let tied = false;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      [best, bestDistance, tied] = [candidate, distance, false];
    } else if (distance === bestDistance && candidate !== best) {
      tied = true;
    }
  }
  return bestDistance <= allowed && !tied && best !== word ? best : undefined;
}
