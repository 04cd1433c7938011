/**
 * Incident titles: `{{field}}` substitution only — no expressions, no code.
 * `{{rule}}` is the rule's name, `{{match.NAME}}` a named group of the
 * trigger's pattern, anything else a key or structured field of the entry.
 */

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}/g;
/** Longest text one placeholder contributes: log fields are attacker-influenced. */
const MAX_VALUE = 80;

/** Renders `template`, replacing each placeholder by its value ("?" when absent). */
export function renderTitle(template: string, values: Record<string, unknown>): string {
  return template.replace(PLACEHOLDER, (_all, name: string) => {
    const value = values[name];
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return "?";
    // Control characters could forge lines in a Markdown or terminal rendering.
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    const text = String(value).replace(/[\u0000-\u001f\u007f]/g, " ");
    return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text;
  });
}
