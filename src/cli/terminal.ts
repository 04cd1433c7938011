/**
 * Text from records and the file system, made safe for a terminal, and the
 * tables the CLI's `list` commands print.
 */
import { visible } from "../operator/incidents/markdown.js";

/** A record's text on a terminal: control characters (escape sequences, newlines) made visible, so a record cannot drive the terminal. */
export function terminal(text: string): string {
  return visible(text);
}

/** Left-aligned columns, two spaces apart, header first. Cells are made terminal-safe and cut to 60 characters. */
export function columns(headers: string[], rows: string[][]): string {
  const fit = (cell: string): string => {
    const safe = terminal(cell);
    return safe.length > 60 ? `${safe.slice(0, 59)}…` : safe;
  };
  const cells = [headers, ...rows].map((row) => row.map(fit));
  const widths = headers.map((_, n) => Math.max(...cells.map((row) => row[n]!.length)));
  const line = (row: string[]): string => row.map((cell, n) => cell.padEnd(widths[n]!)).join("  ").trimEnd();
  return `${cells.map(line).join("\n")}\n`;
}
