/**
 * The metric names a PromQL expression reads, found by a small tokenizer
 * (not a full parser): string literals, Grafana variables, label matchers
 * `{…}`, ranges `[…]` and grouping clauses (`by`, `without`, `on`,
 * `ignoring`, `group_left`, `group_right` with their label lists) are dropped;
 * what is left is numbers, durations, operators, keywords, function names (an
 * identifier followed by `(`) and metric names. A selector's
 * `{__name__="x"}` names `x`. Enough for the expressions of alerts.yaml and
 * dashboard.json; test/monitoring/promql-names.test.ts pins what it handles.
 */

/** Words of PromQL that are neither functions nor metric names. */
const KEYWORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan", "atan2"]);

const STRING = /"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`/g;
const NAME_MATCHER = /__name__\s*=\s*"((?:[^"\\\n]|\\.)*)"/g;
const GRAFANA_VARIABLE = /\$\{[^}]*\}|\$\w+/g;
const GROUPING = /\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)/g;
const TOKEN = /0x[0-9a-f]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?[a-z]*|[a-z_:][a-z0-9_:]*|\S/gi;
const IDENTIFIER = /^[a-z_:][a-z0-9_:]*$/i;

/** An expression the tokenizer cannot read (an unterminated string or matcher). */
export class PromqlTokenError extends Error {
  readonly code = "ERR_PROMQL_TOKENS";
}

/** The distinct metric names `expr` reads, in order of first use. Throws PromqlTokenError on an unterminated string, `{` or `[`. */
export function metricNames(expr: string): string[] {
  const names: string[] = [];
  const add = (name: string): void => {
    if (!names.includes(name)) names.push(name);
  };
  let text = expr.replace(/#[^\n]*/g, " ");
  // Strings first: a label value may hold any of the characters below.
  const byName = new Map<number, string>();
  for (const m of text.matchAll(NAME_MATCHER)) byName.set(m.index, m[1]!);
  text = text.replace(STRING, " ");
  if (/["'`]/.test(text)) throw new PromqlTokenError(`unterminated string in ${JSON.stringify(expr)}`);
  text = text.replace(GRAFANA_VARIABLE, " ");
  // A matcher list may name the metric; what else it holds is labels.
  text = text.replace(/\{[^{}]*\}/g, (m) => (/__name__\s*=(?!~)/.test(m) ? " __NAME_MATCHER__ " : " "));
  text = text.replace(/\[[^[\]]*\]/g, " ");
  if (/[{}[\]]/.test(text)) throw new PromqlTokenError(`unbalanced { or [ in ${JSON.stringify(expr)}`);
  text = text.replace(GROUPING, " ");
  const nameMatchers = [...byName.values()];
  const tokens = [...text.matchAll(TOKEN)].map((m) => ({ token: m[0], end: m.index + m[0].length }));
  for (const { token, end } of tokens) {
    if (token === "__NAME_MATCHER__") {
      const name = nameMatchers.shift();
      if (name !== undefined) add(name);
      continue;
    }
    if (!IDENTIFIER.test(token) || KEYWORDS.has(token.toLowerCase())) continue;
    if (/^\s*\(/.test(text.slice(end))) continue; // a function or an aggregation
    add(token);
  }
  return names;
}
