/**
 * Checks on a text trigger's RE2 patterns that RE2 itself does not make:
 * that a pattern is anchored at both ends as a whole (so a line that merely
 * contains the wording, after some user text, does not match), which named
 * groups it has, and that the group naming the user can only capture what a
 * user id may hold (`src/contract/ids.ts`).
 *
 * It reads the pattern's source with a small scanner rather than RE2's parse
 * tree (re2js does not export one). The scanner is conservative: what it does
 * not understand inside the user id group is refused, never assumed safe.
 * Patterns reach it only after RE2 compiled them, so the syntax is valid.
 */

/** A problem with a text pattern, in words for the rule's author. */
export type PatternProblem = string;

/** One capture group of a pattern: its name (null when unnamed) and the source between its parentheses. */
export interface GroupSource {
  name: string | null;
  /** The group's body: after `(?P<name>`, before its `)`. */
  body: string;
}

interface Scan {
  /** A `|` outside every group and class. */
  topLevelAlternation: boolean;
  /** Flag letters set by `(?flags)` or `(?flags:…)` anywhere (not those after a `-`). */
  flags: Set<string>;
  groups: GroupSource[];
}

/** The named-group openers RE2 accepts: `(?P<name>` and `(?<name>`. */
const NAMED_GROUP = /^\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>/;
/** A flag group: `(?i)`, `(?i-s:`. */
const FLAG_GROUP = /^\(\?([imsU]*)(?:-[imsU]*)?[:)]/;

function scan(pattern: string): Scan {
  const result: Scan = { topLevelAlternation: false, flags: new Set(), groups: [] };
  /** Open groups: where each body starts and its index in `result.groups` (null for a group that captures nothing). */
  const open: { start: number; group: number | null }[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === "\\") {
      if (pattern[i + 1] === "Q") {
        const end = pattern.indexOf("\\E", i + 2);
        i = end < 0 ? pattern.length : end + 2;
      } else i += 2;
      continue;
    }
    if (c === "[") {
      i = classEnd(pattern, i);
      continue;
    }
    if (c === "(") {
      const rest = pattern.slice(i);
      const named = NAMED_GROUP.exec(rest);
      const flags = FLAG_GROUP.exec(rest);
      if (named !== null) {
        result.groups.push({ name: named[1]!, body: "" });
        open.push({ start: i + named[0].length, group: result.groups.length - 1 });
        i += named[0].length;
        continue;
      }
      if (flags !== null) {
        for (const f of flags[1]!) result.flags.add(f);
        if (flags[0].endsWith(")")) {
          i += flags[0].length;
          continue;
        }
        open.push({ start: i + flags[0].length, group: null });
        i += flags[0].length;
        continue;
      }
      if (rest.startsWith("(?:")) {
        open.push({ start: i + 3, group: null });
        i += 3;
        continue;
      }
      result.groups.push({ name: null, body: "" });
      open.push({ start: i + 1, group: result.groups.length - 1 });
      i++;
      continue;
    }
    if (c === ")") {
      const top = open.pop();
      if (top !== undefined && top.group !== null) result.groups[top.group]!.body = pattern.slice(top.start, i);
      i++;
      continue;
    }
    if (c === "|" && open.length === 0) result.topLevelAlternation = true;
    i++;
  }
  return result;
}

/** The index just after the character class that starts at `start` (`[`). */
function classEnd(pattern: string, start: number): number {
  let i = start + 1;
  if (pattern[i] === "^") i++;
  if (pattern[i] === "]") i++; // a `]` first in a class is a literal
  while (i < pattern.length && pattern[i] !== "]") {
    if (pattern[i] === "\\") i += 2;
    else if (pattern.startsWith("[:", i)) {
      const end = pattern.indexOf(":]", i + 2);
      i = end < 0 ? i + 1 : end + 2;
    } else i++;
  }
  return i + 1;
}

/** Whether the `$` (or `\z`) that ends `pattern` is an anchor, not an escaped character. */
function endsAnchored(pattern: string): boolean {
  const last = pattern.endsWith("$") ? 1 : pattern.endsWith("\\z") ? 2 : 0;
  if (last === 0) return false;
  let backslashes = 0;
  for (let i = pattern.length - last - 1; i >= 0 && pattern[i] === "\\"; i--) backslashes++;
  // `\$` is a literal dollar sign; `\\$` is a literal backslash, then the anchor.
  return backslashes % 2 === 0;
}

/**
 * Why `pattern` is not anchored as a whole, or null when it is: it must start
 * with `^` (or `\A`), end with `$` (or `\z`), have no `|` outside a group
 * (`^a|b$` is `(^a)|(b$)`), and not set the `m` flag (which makes `^` and `$`
 * match at every line break of a message).
 */
export function anchoringProblem(pattern: string): PatternProblem | null {
  if (!pattern.startsWith("^") && !pattern.startsWith("\\A")) return "must be anchored: start it with ^ so that a line that only contains this text (after user input) does not match";
  if (!endsAnchored(pattern)) return "must be anchored: end it with $ so that a line that only starts with this text does not match";
  const s = scan(pattern);
  if (s.topLevelAlternation) return "must be anchored as a whole: a | outside any group makes ^a|b$ mean (^a)|(b$); write ^(?:a|b)$";
  if (s.flags.has("m")) return "must not set the m flag: it makes ^ and $ match at every line break inside a message";
  return null;
}

/** Characters a user id may hold (`USER_ID_PATTERN` in src/contract/ids.ts), ASCII only. */
function userIdChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || code === 0x2e || code === 0x5f || code === 0x3a || code === 0x40 || code === 0x2d
  );
}

const USER_ID_CHARS = "A-Za-z0-9._:@-";
/** Escapes whose characters are all user id characters in RE2 (`\d` and `\w` are ASCII in RE2), and escaped literals. */
const SAFE_ESCAPES = new Set(["d", "w", ".", "-", ":", "@"]);
/** POSIX classes inside brackets that hold user id characters only. */
const SAFE_POSIX = new Set(["[:digit:]", "[:alnum:]", "[:alpha:]", "[:upper:]", "[:lower:]", "[:xdigit:]", "[:word:]"]);

/**
 * Why the group `name` of `pattern` could capture a character a user id may
 * not hold, or null when it cannot (call it for a group RE2 says the pattern
 * has: a group this scanner cannot find is a problem, never safe). Allowed in the group: literal characters
 * of `[A-Za-z0-9._:@-]`, `\d`, `\w`, classes of those (not negated),
 * repetitions and non-capturing groups. `.`, `\S`, negated classes, Unicode
 * classes and the `i` flag (RE2 folds `k` to the Kelvin sign) are refused.
 * Length is not checked here: an over-long id is refused when the entry is
 * read (the detector's user id check).
 */
export function userIdGroupProblem(pattern: string, name: string): PatternProblem | null {
  const s = scan(pattern);
  const group = s.groups.find((g) => g.name === name);
  // RE2 found the group (the caller asks only then) but this scanner did not: it cannot vouch for it.
  if (group === undefined) return `the group (?P<${name}>…) could not be checked; write it plainly, e.g. (?P<${name}>[0-9]{1,64})`;
  if (s.flags.has("i")) return `sets the i flag, and RE2's case folding lets letters of (?P<${name}>…) match characters outside ${USER_ID_CHARS} (k matches the Kelvin sign)`;
  const bad = unsafePart(group.body);
  return bad === null ? null : `(?P<${name}>…) could capture characters a user id may not hold (${bad}); use only ${USER_ID_CHARS}, \\d, \\w, classes of them and repetitions, e.g. [0-9]{1,64}`;
}

/** The first construct of a group body that could match a character outside the user id set, or null. */
function unsafePart(body: string): string | null {
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    if (c === "\\") {
      const e = body[i + 1] ?? "";
      if (!SAFE_ESCAPES.has(e)) return `\\${e}`;
      i += 2;
      continue;
    }
    if (c === "[") {
      const end = classEnd(body, i);
      const bad = unsafeClass(body.slice(i, end));
      if (bad !== null) return bad;
      i = end;
      continue;
    }
    if (c === "(") {
      const rest = body.slice(i);
      const opener = NAMED_GROUP.exec(rest)?.[0] ?? (rest.startsWith("(?:") ? "(?:" : rest.startsWith("(?") ? null : "(");
      if (opener === null) return rest.slice(0, 4);
      i += opener.length;
      continue;
    }
    if (c === ")" || c === "|" || c === "*" || c === "+" || c === "?") {
      i++;
      continue;
    }
    if (c === "{") {
      const repeat = /^\{\d+(?:,\d*)?\}/.exec(body.slice(i));
      if (repeat === null) return "{";
      i += repeat[0].length;
      continue;
    }
    if (c === ".") return ". (any character)";
    if (c === "^" || c === "$") return c;
    const code = body.codePointAt(i)!;
    if (!userIdChar(code)) return JSON.stringify(String.fromCodePoint(code));
    i += code > 0xffff ? 2 : 1;
  }
  return null;
}

/** Why a bracketed class (with its brackets) could match a character outside the user id set, or null. */
function unsafeClass(cls: string): string | null {
  if (cls.startsWith("[^")) return `${cls} (a negated class)`;
  const inner = cls.slice(1, -1);
  let i = 0;
  let previous: number | null = null;
  while (i < inner.length) {
    if (inner.startsWith("[:", i)) {
      const end = inner.indexOf(":]", i + 2);
      const posix = inner.slice(i, end + 2);
      if (!SAFE_POSIX.has(posix)) return `${posix} in ${cls}`;
      i = end + 2;
      previous = null;
      continue;
    }
    let code: number;
    let width: number;
    if (inner[i] === "\\") {
      const e = inner[i + 1] ?? "";
      if (e === "d" || e === "w") {
        i += 2;
        previous = null;
        continue;
      }
      // Any other escape is either a set (\s, \p…, \x…) or a character checked below like a literal one.
      if (/[A-Za-z0-9]/.test(e)) return `\\${e} in ${cls}`;
      code = e.codePointAt(0)!;
      width = 2;
    } else {
      code = inner.codePointAt(i)!;
      width = code > 0xffff ? 2 : 1;
    }
    // A range: `a-z`. A `-` first or last in the class is the character itself.
    if (code === 0x2d && previous !== null && width === 1 && i + 1 < inner.length) {
      const next = inner[i + 1] === "\\" ? (inner[i + 2] ?? "").codePointAt(0) : inner.codePointAt(i + 1);
      if (next === undefined) return cls;
      for (let k = previous; k <= next; k++) if (!userIdChar(k)) return `the range ${String.fromCodePoint(previous)}-${String.fromCodePoint(next)} in ${cls}`;
      i += 1 + (inner[i + 1] === "\\" ? 2 : next > 0xffff ? 2 : 1);
      previous = null;
      continue;
    }
    if (!userIdChar(code)) return `${JSON.stringify(String.fromCodePoint(code))} in ${cls}`;
    previous = code;
    i += width;
  }
  return null;
}
